#include "daemon/api/machines_service.h"

#include <chrono>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "daemon/api/status.h"
#include "daemon/loop/channel.h"
#include "daemon/mount/mount_spec.h"

namespace cove::daemon::api {
namespace {

using Clock = std::chrono::steady_clock;

// Runs a machine operation on the loop and streams its progress to `writer`:
// `Resp` messages built by `make_phase`, then the machine, then the status.
template <typename Resp, typename PhaseEnum>
grpc::Status StreamOperation(
    EventLoop& loop, grpc::ServerContext* ctx, grpc::ServerWriter<Resp>* writer,
    MachineManager& manager, const std::string& name,
    const std::function<void(Machine*, Machine::Progress, Machine::Done)>& op) {
  using Item = std::variant<Resp, absl::Status>;
  auto channel = std::make_shared<Channel<Item>>(256);
  const auto begun = Clock::now();
  auto elapsed = [begun]() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - begun).count());
  };
  bool posted = loop.Post([&manager, name, op, channel, elapsed]() {
    auto machine = manager.Find(name);
    if (!machine.ok()) {
      channel->Push(machine.status(), /*final=*/true);
      return;
    }
    Machine* m = *machine;
    op(
        m,
        [channel, elapsed](int phase, const std::string& message) {
          Resp r;
          r.set_phase(static_cast<PhaseEnum>(phase));
          r.set_message(message);
          r.set_elapsed_ms(elapsed());
          channel->Push(std::move(r));
        },
        [channel, elapsed, &manager, name](absl::Status st) {
          if (st.ok()) {
            if (auto again = manager.Find(name); again.ok()) {
              Resp r;
              *r.mutable_machine() = (*again)->view();
              r.set_elapsed_ms(elapsed());
              channel->Push(std::move(r), /*final=*/true);
            }
          }
          channel->Push(st, /*final=*/true);
        });
  });
  if (!posted)
    return Error(cove::v1::SHUTTING_DOWN, grpc::StatusCode::UNAVAILABLE, "coved is shutting down");
  for (;;) {
    auto item = channel->Pop(std::chrono::seconds(1));
    if (!item.has_value()) {
      // The operation goes on without a listener if the client leaves.
      if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
      continue;
    }
    if (auto* st = std::get_if<absl::Status>(&*item)) return ToGrpc(*st);
    writer->Write(std::get<Resp>(*item));
  }
}

}  // namespace

absl::StatusOr<cove::v1::Machine> MachinesService::DoCreate(const std::string& name,
                                                            const cove::v1::MachineSpec& in) {
  if (auto st = ValidateName(name); !st.ok()) {
    return OrReason(st, cove::v1::INVALID_NAME, {{"field", "name"}});
  }
  auto spec = NormalizeSpec(in, host_);
  if (!spec.ok()) return OrReason(spec.status(), cove::v1::INVALID_SPEC, {{"field", "spec"}});
  if (auto st = ResolveMounts(*spec, host_.user_home); !st.ok()) {
    return OrReason(st, cove::v1::INVALID_SPEC, {{"field", "spec.mounts"}});
  }
  // Quick existence check before hashing the image.
  auto exists = loop_.Call<bool>([this, name]() { return manager_.Find(name).ok(); });
  if (!exists.ok()) return exists.status();
  if (*exists) {
    return WithReason(absl::AlreadyExistsError(absl::StrCat("a machine named '", name,
                                                            "' already exists; pick another name "
                                                            "or `cove delete ",
                                                            name, "` first")),
                      cove::v1::NAME_TAKEN, {{"machine", name}});
  }
  auto image = images_.Resolve(spec->image(), spec->arch(), /*verify_digests=*/true);
  if (!image.ok()) {
    if (absl::IsNotFound(image.status())) {
      return OrReason(image.status(), cove::v1::IMAGE_NOT_FOUND, {{"image", spec->image()}});
    }
    if (absl::IsInvalidArgument(image.status())) {
      return OrReason(image.status(), cove::v1::INVALID_SPEC, {{"field", "spec.image"}});
    }
    return OrReason(image.status(), cove::v1::HOST_ERROR, {{"image", spec->image()}});
  }
  auto created = loop_.Call<absl::StatusOr<cove::v1::Machine>>(
      [this, name, spec = *spec, image = *image]() { return manager_.Create(name, spec, image); });
  if (!created.ok()) return created.status();
  return *created;
}

grpc::Status MachinesService::Create(grpc::ServerContext* ctx,
                                     const cove::v1::CreateMachineRequest* req,
                                     cove::v1::Machine* resp) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  auto created = DoCreate(req->name(), req->spec());
  if (!created.ok()) return ToGrpc(created.status());
  *resp = *created;
  return grpc::Status::OK;
}

grpc::Status MachinesService::Start(grpc::ServerContext* ctx,
                                    const cove::v1::StartMachineRequest* req,
                                    grpc::ServerWriter<cove::v1::StartMachineResponse>* writer) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  if (auto st = ValidateName(req->name()); !st.ok()) {
    return ToGrpc(OrReason(st, cove::v1::INVALID_NAME, {{"field", "name"}}));
  }
  if (req->create_if_missing()) {
    auto exists =
        loop_.Call<bool>([this, name = req->name()]() { return manager_.Find(name).ok(); });
    if (!exists.ok()) return ToGrpc(exists.status());
    if (!*exists) {
      cove::v1::StartMachineResponse r;
      r.set_phase(cove::v1::START_PHASE_CREATING);
      r.set_message("creating machine '" + req->name() + "'");
      writer->Write(r);
      auto created = DoCreate(req->name(), req->spec());
      if (!created.ok() && !absl::IsAlreadyExists(created.status())) {
        return ToGrpc(created.status());
      }
    }
  }
  // Start only starts: sizes and the runtime change through Update.
  const uint32_t timeout = req->timeout_seconds();
  return StreamOperation<cove::v1::StartMachineResponse, cove::v1::StartPhase>(
      loop_, ctx, writer, manager_, req->name(),
      [timeout](Machine* m, Machine::Progress p, Machine::Done d) {
        m->Start(timeout, std::move(p), std::move(d));
      });
}

grpc::Status MachinesService::Stop(grpc::ServerContext* ctx,
                                   const cove::v1::StopMachineRequest* req,
                                   grpc::ServerWriter<cove::v1::StopMachineResponse>* writer) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  const bool force = req->force();
  const uint32_t timeout = req->timeout_seconds();
  return StreamOperation<cove::v1::StopMachineResponse, cove::v1::StopPhase>(
      loop_, ctx, writer, manager_, req->name(),
      [force, timeout](Machine* m, Machine::Progress p, Machine::Done d) {
        m->Stop(force, timeout, std::move(p), std::move(d));
      });
}

grpc::Status MachinesService::Delete(grpc::ServerContext* ctx,
                                     const cove::v1::DeleteMachineRequest* req,
                                     cove::v1::DeleteMachineResponse*) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  auto done = std::make_shared<Channel<absl::Status>>(1);
  if (!loop_.Post([this, name = req->name(), force = req->force(), done]() {
        manager_.Delete(name, force, [done](absl::Status st) { done->Push(std::move(st), true); });
      })) {
    return Error(cove::v1::SHUTTING_DOWN, grpc::StatusCode::UNAVAILABLE, "coved is shutting down");
  }
  for (;;) {
    if (auto st = done->Pop(std::chrono::seconds(1)); st.has_value()) return ToGrpc(*st);
    if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
  }
}

void MachinesService::RefreshGuests(const std::string& name) {
  auto done = std::make_shared<Channel<bool>>(1);
  if (!loop_.Post([this, name, done]() {
        manager_.RefreshGuests(name, [done]() { done->Push(true, /*final=*/true); });
      })) {
    return;
  }
  // The machines bound their own waits; this only guards against a loop
  // that does not run the closure.
  done->Pop(std::chrono::milliseconds(Machine::kRefreshBoundMs + 1000));
}

grpc::Status MachinesService::List(grpc::ServerContext* ctx,
                                   const cove::v1::ListMachinesRequest* req,
                                   cove::v1::ListMachinesResponse* resp) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  if (req->refresh_guest()) RefreshGuests("");
  auto list = loop_.Call<std::vector<cove::v1::Machine>>([this]() { return manager_.List(); });
  if (!list.ok()) return ToGrpc(list.status());
  for (auto& m : *list) *resp->add_machines() = std::move(m);
  return grpc::Status::OK;
}

grpc::Status MachinesService::Get(grpc::ServerContext* ctx, const cove::v1::GetMachineRequest* req,
                                  cove::v1::Machine* resp) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  if (req->refresh_guest()) RefreshGuests(req->name());
  auto got = loop_.Call<absl::StatusOr<cove::v1::Machine>>(
      [this, name = req->name()]() -> absl::StatusOr<cove::v1::Machine> {
        auto m = manager_.Find(name);
        if (!m.ok()) return m.status();
        return (*m)->view();
      });
  if (!got.ok()) return ToGrpc(got.status());
  if (!got->ok()) return ToGrpc(got->status());
  *resp = **got;
  return grpc::Status::OK;
}

grpc::Status MachinesService::ChangeMachine(grpc::ServerContext* ctx, const std::string& name,
                                            std::function<absl::Status(Machine&)> change,
                                            cove::v1::Machine* resp) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  auto got = loop_.Call<absl::StatusOr<cove::v1::Machine>>(
      [this, name, change = std::move(change)]() -> absl::StatusOr<cove::v1::Machine> {
        auto m = manager_.Find(name);
        if (!m.ok()) return m.status();
        if (auto st = change(**m); !st.ok()) return st;
        return (*m)->view();
      });
  if (!got.ok()) return ToGrpc(got.status());
  if (!got->ok()) return ToGrpc(got->status());
  *resp = **got;
  return grpc::Status::OK;
}

grpc::Status MachinesService::Update(grpc::ServerContext* ctx,
                                     const cove::v1::UpdateMachineRequest* req,
                                     cove::v1::Machine* resp) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  const cove::v1::MachineSpec& in = req->spec();
  if (req->update_mask().paths().empty()) {
    return Error(cove::v1::UNKNOWN_FIELD_PATH, grpc::StatusCode::INVALID_ARGUMENT,
                 "update_mask names no field; name the MachineSpec fields to change (cpus, "
                 "memory_bytes, port_rules, ...)",
                 {{"field", "update_mask"}});
  }
  Machine::Settings settings;
  bool restart = false, max_restarts = false, mounts = false, no_mounts = false;
  for (const std::string& path : req->update_mask().paths()) {
    if (path == "port_rules") {
      settings.port_rules = in.port_rules();
    } else if (path == "restart") {
      restart = true;
    } else if (path == "max_restarts") {
      max_restarts = true;
    } else if (path == "autostart") {
      settings.autostart = in.autostart();
    } else if (path == "runtime") {
      settings.runtime = in.runtime() == cove::v1::RUNTIME_UNSPECIFIED
                             ? cove::v1::RUNTIME_CONTAINERD
                             : in.runtime();
      if (*settings.runtime != cove::v1::RUNTIME_CONTAINERD &&
          *settings.runtime != cove::v1::RUNTIME_DOCKER) {
        return Error(cove::v1::INVALID_SPEC, grpc::StatusCode::INVALID_ARGUMENT,
                     "unknown runtime; use RUNTIME_CONTAINERD or RUNTIME_DOCKER",
                     {{"field", "spec.runtime"}});
      }
    } else if (path == "accel") {
      settings.accel = in.accel();
    } else if (path == "foreign_binaries") {
      settings.foreign_binaries = !in.has_foreign_binaries() || in.foreign_binaries();
    } else if (path == "cpus") {
      settings.cpus = in.cpus();
    } else if (path == "memory_bytes") {
      settings.memory_bytes = in.memory_bytes();
    } else if (path == "disk_bytes") {
      settings.disk_bytes = in.disk_bytes();
    } else if (path == "mounts") {
      mounts = true;
    } else if (path == "no_mounts") {
      no_mounts = true;
    } else if (path == "static_forwards") {
      return Error(cove::v1::FIELD_IMMUTABLE, grpc::StatusCode::INVALID_ARGUMENT,
                   "static forwards change one at a time: use AddForward and RemoveForward",
                   {{"field", path}});
    } else if (cove::v1::MachineSpec::descriptor()->FindFieldByName(path) != nullptr) {
      return Error(cove::v1::FIELD_IMMUTABLE, grpc::StatusCode::INVALID_ARGUMENT,
                   "'" + path + "' cannot change on an existing machine; create another machine",
                   {{"field", path}});
    } else {
      return Error(cove::v1::UNKNOWN_FIELD_PATH, grpc::StatusCode::INVALID_ARGUMENT,
                   "update_mask names '" + path +
                       "', which is no MachineSpec field; use cpus, memory_bytes, disk_bytes, "
                       "accel, port_rules, restart, max_restarts, autostart, mounts, no_mounts, "
                       "foreign_binaries or runtime",
                   {{"field", path}});
    }
  }
  // Mounts: the list and "none at all" are one setting. Resolved here, off
  // the loop (it looks at the host's file system); what the mask leaves out
  // comes from the machine, in the loop.
  std::optional<google::protobuf::RepeatedPtrField<cove::v1::Mount>> new_list, home_list;
  if (mounts || no_mounts) {
    if (no_mounts && in.no_mounts() && mounts && !in.mounts().empty()) {
      return Error(cove::v1::INVALID_SPEC, grpc::StatusCode::INVALID_ARGUMENT,
                   "no_mounts with a list of mounts: give one or the other",
                   {{"field", "spec.mounts"}});
    }
    // The new list, or the home for "no_mounts false" alone (used when the
    // machine had none).
    const bool home = no_mounts && !in.no_mounts() && !mounts;
    if (mounts || home) {
      cove::v1::MachineSpec resolved;
      if (mounts) *resolved.mutable_mounts() = in.mounts();
      if (auto st = ResolveMounts(resolved, host_.user_home); !st.ok()) {
        return ToGrpc(OrReason(st, cove::v1::INVALID_SPEC, {{"field", "spec.mounts"}}));
      }
      (mounts ? new_list : home_list) = resolved.mounts();
    }
  }
  return ChangeMachine(
      ctx, req->name(),
      [settings, restart, max_restarts, mounts, no_mounts, new_list, home_list,
       in](Machine& m) mutable {
        const cove::v1::MachineSpec& now = m.spec();
        // The policy and its limit are one setting: a path for either keeps
        // the other as it is.
        if (restart || max_restarts) {
          settings.restart = std::make_pair(restart ? in.restart() : now.restart(),
                                            max_restarts ? in.max_restarts() : now.max_restarts());
        }
        if (mounts || no_mounts) {
          const bool none = no_mounts ? in.no_mounts() : !mounts && now.no_mounts();
          settings.no_mounts = none;
          if (none) {
            settings.mounts.emplace();  // none at all
          } else if (mounts) {
            settings.mounts = new_list;
          } else {
            // no_mounts false alone: the mounts it had, or the home if none.
            settings.mounts = now.no_mounts() ? *home_list : now.mounts();
          }
        }
        return m.ChangeSettings(settings);
      },
      resp);
}

grpc::Status MachinesService::AddForward(grpc::ServerContext* ctx,
                                         const cove::v1::AddForwardRequest* req,
                                         cove::v1::Machine* resp) {
  return ChangeMachine(
      ctx, req->name(), [f = req->forward()](Machine& m) { return m.AddStaticForward(f); }, resp);
}

grpc::Status MachinesService::RemoveForward(grpc::ServerContext* ctx,
                                            const cove::v1::RemoveForwardRequest* req,
                                            cove::v1::Machine* resp) {
  return ChangeMachine(
      ctx, req->name(), [f = req->forward()](Machine& m) { return m.RemoveStaticForward(f); },
      resp);
}

grpc::Status MachinesService::Watch(grpc::ServerContext* ctx, const cove::v1::WatchRequest* req,
                                    grpc::ServerWriter<cove::v1::Event>* writer) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  auto sub = events_.Subscribe();
  if (!sub) {
    return Error(cove::v1::TOO_MANY, grpc::StatusCode::RESOURCE_EXHAUSTED,
                 "too many watchers; close some `cove events` clients");
  }
  const std::string& only = req->name();
  bool wrote = false;
  if (req->initial_snapshot()) {
    auto list = loop_.Call<std::vector<cove::v1::Machine>>([this]() { return manager_.List(); });
    if (list.ok()) {
      for (const auto& m : *list) {
        if (!only.empty() && m.name() != only) continue;
        cove::v1::Event e;
        e.set_kind(cove::v1::EVENT_KIND_MACHINE_SNAPSHOT);
        e.set_machine_name(m.name());
        *e.mutable_machine() = m;
        if (!writer->Write(e)) break;
        wrote = true;
      }
    }
  }
  // gRPC sends headers with the first message; flush them so clients know
  // the watch is established even when nothing happens.
  if (!wrote) writer->SendInitialMetadata();
  grpc::Status result = grpc::Status::OK;
  for (;;) {
    auto event = sub->Pop(std::chrono::seconds(1));
    if (!event.has_value()) {
      if (sub->closed()) break;
      if (ctx->IsCancelled()) break;
      continue;
    }
    if (!only.empty() && event->machine_name() != only) continue;
    if (!writer->Write(*event)) break;
  }
  events_.Unsubscribe(sub);
  return result;
}

}  // namespace cove::daemon::api
