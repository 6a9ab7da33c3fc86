#include "daemon/machine/machine.h"

#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/api_names.h"
#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/sizes.h"
#include "daemon/image/agent_initrd.h"
#include "daemon/machine/emulation_report.h"
#include "daemon/machine/exec_table.h"
#include "daemon/machine/guest_forwards.h"
#include "daemon/machine/guest_network.h"
#include "daemon/machine/runtime_services.h"
#include "daemon/machine/spec.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

using cove::v1::MachineState;
using google::protobuf::util::TimeUtil;

std::string Bounded(const std::string& s) { return BoundedGuestText(s); }

}  // namespace

Machine::Machine(MachineEnv& env, cove::v1::Machine record)
    : env_(env),
      record_(std::move(record)),
      start_deadline_(env.loop),
      stop_step_(env.loop),
      restart_timer_(env.loop),
      life_check_(env.loop) {
  mounts_ = std::make_unique<MountSet>(
      MountSet::Env{.loop = env_.loop,
                    .machine = record_.name(),
                    .dir = record_.dir(),
                    .support = env_.driver.mount_support(),
                    .agent = [this]() { return agent(); }},
      [this](const cove::v1::MountInfo& mount) { OnMountChanged(mount); });
  health_ = std::make_unique<GuestHealth>(
      record_.name(), record_,
      [this](cove::v1::EventKind kind, const std::string& message, const cove::v1::OomKill* kill) {
        Publish(kind, message, [kill](cove::v1::Event& event) {
          if (kill != nullptr) *event.mutable_oom_kill() = *kill;
        });
        Persist();  // the kills survive a coved restart, for the dedup of replays
      });
}

Machine::~Machine() { boot_.reset(); }

absl::Status Machine::AddStaticForward(const cove::v1::StaticForward& forward) {
  return ChangeSpec([&forward](cove::v1::MachineSpec& spec) {
    *spec.add_static_forwards() = forward;
    return absl::OkStatus();
  });
}

absl::Status Machine::RemoveStaticForward(const cove::v1::StaticForward& forward) {
  const ForwardKey want = StaticForwardKey(forward);
  return ChangeSpec([&](cove::v1::MachineSpec& spec) {
    auto* list = spec.mutable_static_forwards();
    const int before = list->size();
    for (int i = list->size() - 1; i >= 0; i--) {
      if (StaticForwardKey(list->Get(i)) == want) list->DeleteSubrange(i, 1);
    }
    if (list->size() != before) return absl::OkStatus();
    return WithReason(
        absl::NotFoundError(absl::StrCat("machine '", name(), "' has no static forward for ",
                                         Describe(want), "; see `cove ports ", name(), "`")),
        cove::v1::FORWARD_NOT_FOUND,
        {{"machine", name()}, {"hostPort", std::to_string(want.host_port)}});
  });
}

absl::Status Machine::Tagged(absl::Status status, cove::v1::ErrorReason reason) const {
  return WithReason(std::move(status), reason,
                    {{"machine", name()}, {"state", StateName(state())}});
}

bool Machine::busy() const {
  return state() == cove::v1::MACHINE_STATE_STARTING || state() == cove::v1::MACHINE_STATE_STOPPING;
}

void Machine::SetState(MachineState state, const std::string& why) {
  const MachineState previous = record_.state();
  record_.set_state(state);
  if (state == cove::v1::MACHINE_STATE_ERROR) record_.set_error(why);
  if (state == cove::v1::MACHINE_STATE_RUNNING) record_.clear_error();
  if (boot_ && state == cove::v1::MACHINE_STATE_RUNNING && previous != state) boot_->OnRunning();
  if (boot_ && state != cove::v1::MACHINE_STATE_RUNNING) boot_->OnNotRunning();
  Persist();
  if (previous == state) return;
  spdlog::info("{}: {} -> {}{}{}", name(), StateName(previous), StateName(state),
               why.empty() ? "" : ": ", why);
  Publish(cove::v1::EVENT_KIND_MACHINE_STATE_CHANGED, why,
          [previous](cove::v1::Event& event) { event.set_previous_state(previous); });
}

void Machine::Publish(cove::v1::EventKind kind, const std::string& message,
                      const std::function<void(cove::v1::Event&)>& fill) {
  cove::v1::Event event;
  event.set_kind(kind);
  event.set_machine_name(name());
  *event.mutable_machine() = view();
  event.set_message(message);
  if (fill) fill(event);
  env_.events.Publish(std::move(event));
}

void Machine::Persist() {
  if (auto st = env_.store.Save(record_); !st.ok()) {
    spdlog::error("{}: cannot save machine.json: {}", name(), std::string(st.message()));
  }
}

void Machine::BeginBoot(std::unique_ptr<VmInstance> vm) {
  auto link = std::make_unique<AgentLink>(
      env_.loop, name(), record_.paths().debug_agent_socket(),
      AgentLink::Callbacks{
          .on_hello = [this](const cove::agent::v1::Hello& h) { OnHello(h); },
          .on_lost =
              [this](const std::string& why) {
                spdlog::warn("{}: agent lost: {}", name(), why);
                Publish(cove::v1::EVENT_KIND_AGENT_DISCONNECTED, why);
              },
      });
  link->Handle(cove::agent::v1::GuestToHost::kShutdownAck,
               [this](const cove::agent::v1::GuestToHost&) {
                 spdlog::info("{}: guest is powering off", name());
               });
  boot_ = std::make_unique<Boot>(std::move(vm), std::move(link));
  BootContext ctx{
      .loop = env_.loop,
      .machine = name(),
      .dir = record_.dir(),
      .agent = boot_->agent(),
      .vm = boot_->vm(),
      .publish =
          [this](cove::v1::EventKind kind, const std::string& message,
                 const std::function<void(cove::v1::Event&)>& fill) {
            Publish(kind, message, fill);
          },
      .readiness_changed = [this]() { MaybeBecomeRunning(); },
  };
  // In the order their hooks run: mounts before the runtime, whose
  // containers may use them.
  boot_->Attach(*mounts_);
  boot_->Attach(*health_);
  boot_->Add(std::make_unique<RuntimeServices>(ctx, record_.spec().runtime()));
  forwards_ = &boot_->Add(std::make_unique<GuestForwards>(ctx, env_.ports, record_.spec()));
  execs_ = &boot_->Add(std::make_unique<ExecTable>(boot_->agent()));
  boot_->Add(std::make_unique<EmulationReport>(name()));
  boot_->Add(std::make_unique<GuestNetworkReport>());
  std::vector<cove::agent::v1::ReverseSocket> reverse;
  for (const auto& r : record_.spec().reverse_sockets()) {
    cove::agent::v1::ReverseSocket rs;
    rs.set_name(r.name());
    rs.set_guest_path(r.guest_path());
    reverse.push_back(std::move(rs));
  }
  boot_->agent().Configure({.services = RuntimeFactsOf(record_.spec().runtime()).services,
                            .reverse_sockets = std::move(reverse),
                            .mounts = mounts_->GuestMounts(),
                            .foreign_binaries = !record_.spec().has_foreign_binaries() ||
                                                record_.spec().foreign_binaries()});
}

void Machine::OnHello(const cove::agent::v1::Hello& hello) {
  auto* g = record_.mutable_guest();
  g->set_agent_version(Bounded(hello.agent_version()));
  g->set_kernel_release(Bounded(hello.kernel_release()));
  g->set_arch(Bounded(hello.arch()));
  g->set_boot_to_agent_ms(hello.boot_to_agent_ms());
  *g->mutable_last_heartbeat() = TimeUtil::GetCurrentTime();
  health_->OnHello(hello, static_cast<int64_t>(SteadyNowMs()));
  life_check_.Stop();
  Publish(cove::v1::EVENT_KIND_AGENT_CONNECTED,
          absl::StrCat("cove-agent ", hello.agent_version(), " on ", hello.kernel_release()));
  boot_->OnAgentHello();
  if (state() == cove::v1::MACHINE_STATE_STARTING && start_progress_) {
    start_progress_(
        cove::v1::START_PHASE_STARTING_RUNTIME,
        absl::StrCat("guest agent up after ", SteadyNowMs() - boot_->launch_ms, " ms; waiting for ",
                     RuntimeFactsOf(record_.spec().runtime()).ready_service()));
  }
}

cove::v1::Machine Machine::view() const {
  cove::v1::Machine out = record_;
  // What a boot knows comes from the boot, or is not there.
  out.clear_services();
  out.clear_sockets();
  out.clear_forwards();
  out.clear_binfmt_handlers();
  out.clear_emulated();
  if (auto report = env_.accel.Report(record_.spec().arch()); report && report->ok()) {
    for (const auto& v : (*report)->verdicts) *out.add_accel_verdicts() = ToProto(v);
  }
  for (auto& m : mounts_->View()) *out.add_mounts() = std::move(m);
  if (boot_) boot_->AddToView(out);
  return out;
}

void Machine::RefreshGuest(std::function<void()> done) {
  if (!boot_) {
    env_.loop.Post(std::move(done));
    return;
  }
  boot_->agent().Refresh(kRefreshBoundMs, std::move(done));
}

absl::StatusOr<std::shared_ptr<ExecSession>> Machine::StartExec(
    const cove::v1::ExecStart& start, std::shared_ptr<ExecSession::Output> output) {
  if (state() != cove::v1::MACHINE_STATE_RUNNING || !boot_) {
    return Tagged(
        absl::FailedPreconditionError(absl::StrCat("machine '", name(), "' is ", StateName(state()),
                                                   "; start it first (`cove start ", name(), "`)")),
        cove::v1::MACHINE_NOT_RUNNING);
  }
  return execs_->Start(start, std::move(output));
}

void Machine::OnVmExit(const VmExit& exit) {
  // Called from inside the instance: the boot (and the instance) is
  // destroyed only after it returns. Its link stops now: every stream
  // resets, so execs and connections end.
  boot_->OnNotRunning();
  boot_->agent().Stop();
  const std::string fallback = std::exchange(boot_->accel_fallback, "");
  const std::string failure = boot_->vm_failure;
  const bool convicts = ExitConvictsAccel(exit);
  forwards_ = nullptr;
  execs_ = nullptr;
  env_.loop.Post([boot = std::shared_ptr<Boot>(std::move(boot_))]() {});
  record_.set_pid(0);
  record_.clear_guest();
  health_->Clear();
  mounts_->Release();
  RemoveRunFiles();
  life_check_.Stop();
  if (state() == cove::v1::MACHINE_STATE_STARTING && !stop_requested_ &&
      (!fallback.empty() || convicts)) {
    std::string line = fallback;
    if (line.empty()) line = RecordAccelFailure(exit.reason);  // qemu is gone already
    // The same start goes on under tcg; its deadline still holds.
    return Launch(cove::v1::ACCEL_TCG, "", false,
                  absl::StrCat("auto: ", line, "; tcg emulates every guest instruction (slow)"));
  }
  start_deadline_.Stop();
  stop_step_.Stop();
  if (stop_requested_) {
    SetState(cove::v1::MACHINE_STATE_STOPPED, exit.reason);
    FinishStop(absl::OkStatus());
    return;
  }
  if (state() == cove::v1::MACHINE_STATE_ERROR) {
    Persist();  // FailStart already said why
    return;
  }
  const bool was_starting = state() == cove::v1::MACHINE_STATE_STARTING;
  if (exit.clean && !was_starting) {
    SetState(cove::v1::MACHINE_STATE_STOPPED, exit.reason);
    return;
  }
  const std::string why =
      absl::StrCat(failure.empty() ? exit.reason : failure, "; last console lines: ", SerialTail());
  SetState(cove::v1::MACHINE_STATE_ERROR, why);
  if (was_starting) FinishStart(Tagged(absl::AbortedError(why), cove::v1::START_FAILED));
  MaybeRestart(exit.reason);
}

void Machine::Adopt() {
  const MachineState s = state();
  if (s == cove::v1::MACHINE_STATE_ERROR && record_.pid() == 0 &&
      record_.spec().restart() == cove::v1::RESTART_POLICY_ON_FAILURE &&
      record_.restarts() < record_.spec().max_restarts()) {
    // coved died while a restart waited for its backoff: the policy goes on.
    return MaybeRestart(record_.error());
  }
  if (s != cove::v1::MACHINE_STATE_RUNNING && s != cove::v1::MACHINE_STATE_STARTING &&
      s != cove::v1::MACHINE_STATE_STOPPING) {
    if (record_.has_spec()) {  // left by a crash
      mounts_->ReleaseLeftovers();
      RemoveRunFiles();
    }
    return;
  }
  const int pid = record_.pid();
  auto vm = pid > 0
                ? env_.driver.Adopt(MakeLaunchSpec(record_.accel_in_use()), pid, MakeVmCallbacks())
                : absl::NotFoundError("no pid recorded");
  if (!vm.ok()) {
    record_.set_pid(0);
    record_.clear_guest();
    health_->Clear();
    mounts_->ReleaseLeftovers();
    RemoveRunFiles();
    SetState(
        cove::v1::MACHINE_STATE_STOPPED,
        absl::StrCat("its qemu ended while coved was not running (", vm.status().message(), ")"));
    return;
  }
  record_.clear_guest();  // until the agent says hello again
  mounts_->Adopt();
  BeginBoot(*std::move(vm));
  spdlog::info("{}: re-adopted qemu pid {}", name(), pid);
  // Connections wait for the agent session to come back.
  if (s == cove::v1::MACHINE_STATE_RUNNING) boot_->OnRunning();
  if (s == cove::v1::MACHINE_STATE_STARTING) {
    // The start's client died with the old coved; its deadline still holds.
    start_deadline_.Start(uint64_t{kDefaultStartTimeoutS} * 1000, [this]() {
      FailStart(absl::StrCat("the guest agent did not answer within ", kDefaultStartTimeoutS,
                             " s; last console lines: ", SerialTail()));
    });
  }
  if (s == cove::v1::MACHINE_STATE_STOPPING) {
    // The stop that was under way died with the old coved; finish it.
    stop_requested_ = true;
    stop_timeout_s_ = kDefaultStopTimeoutS;
    stop_progress_ = [](int, const std::string&) {};
    EscalateStop(cove::v1::STOP_PHASE_ACPI_POWERDOWN);
  }
  boot_->agent().Start();
}

void Machine::RemoveRunFiles() const {
  // qemu removes its pid file only when it exits cleanly.
  std::vector<std::string> paths = {record_.paths().debug_qmp_socket(),
                                    record_.paths().debug_agent_socket(),
                                    record_.dir() + "/qemu.pid"};
  for (const auto& s : RuntimeFactsOf(cove::v1::RUNTIME_DOCKER).sockets) {
    paths.push_back(absl::StrCat(record_.dir(), "/", s.name, ".sock"));
  }
  for (const std::string& path : paths) {
    if (::unlink(path.c_str()) == 0) spdlog::debug("{}: removed {}", name(), path);
  }
}

std::string Machine::SerialTail() const {
  const std::string tail = TailLines(record_.paths().serial_log(), 5);
  return tail.empty() ? "(no console output)" : tail;
}

}  // namespace cove::daemon
