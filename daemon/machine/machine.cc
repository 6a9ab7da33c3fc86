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
#include "common/sizes.h"
#include "daemon/driver/qemu/accel_probe.h"
#include "daemon/image/agent_initrd.h"
#include "daemon/machine/spec.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

using cove::v1::MachineState;
using google::protobuf::util::TimeUtil;

// What coved keeps of what a guest says: a broken or hostile guest must not
// grow machine.json, events or host sockets without limit.
constexpr int kMaxGuestListeners = 1024;
constexpr int kMaxGuestServices = 16;

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
                    .agent = [this]() { return agent_.get(); }},
      [this](const cove::v1::MountInfo& mount) { OnMountChanged(mount); });
  health_ = std::make_unique<GuestHealth>(
      record_.name(), record_,
      [this](cove::v1::EventKind kind, const std::string& message, const cove::v1::OomKill* kill) {
        cove::v1::Event event;
        event.set_kind(kind);
        event.set_machine_name(name());
        *event.mutable_machine() = view();
        event.set_message(message);
        if (kill != nullptr) *event.mutable_oom_kill() = *kill;
        env_.events.Publish(std::move(event));
        Persist();  // the kills survive a coved restart, for the dedup of replays
      });
}

Machine::~Machine() {
  CloseSocketForwards();
  if (agent_) agent_->Stop();
}

std::vector<std::string> Machine::WantedServices() const {
  if (record_.spec().runtime() == cove::v1::RUNTIME_DOCKER) return {"containerd", "dockerd"};
  return {"containerd"};
}

absl::Status Machine::SetRuntime(cove::v1::Runtime runtime) {
  if (record_.spec().runtime() == runtime || !record_.has_spec()) return absl::OkStatus();
  const char* want = runtime == cove::v1::RUNTIME_DOCKER ? "docker" : "containerd";
  if (vm_ || busy() || state() == cove::v1::MACHINE_STATE_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("machine '", name(), "' is ", StateName(state()),
                     "; stop it to switch it to the ", want, " runtime"));
  }
  record_.mutable_spec()->set_runtime(runtime);
  Persist();
  spdlog::info("{}: runtime is now {}", name(), want);
  return absl::OkStatus();
}

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
    return absl::NotFoundError(absl::StrCat("machine '", name(), "' has no static forward for ",
                                            Describe(want), "; see `cove ports ", name(), "`"));
  });
}

std::string Machine::RuntimeService() const { return WantedServices().back(); }

bool Machine::busy() const {
  return state() == cove::v1::MACHINE_STATE_STARTING || state() == cove::v1::MACHINE_STATE_STOPPING;
}

void Machine::SetState(MachineState state, const std::string& why) {
  const MachineState previous = record_.state();
  record_.set_state(state);
  if (state == cove::v1::MACHINE_STATE_ERROR) record_.set_error(why);
  if (state == cove::v1::MACHINE_STATE_RUNNING) record_.clear_error();
  if (state == cove::v1::MACHINE_STATE_RUNNING && previous != state) OpenSocketForwards();
  if (state != cove::v1::MACHINE_STATE_RUNNING) CloseSocketForwards();
  Persist();
  if (previous == state) return;
  spdlog::info("{}: {} -> {}{}{}", name(), StateName(previous), StateName(state),
               why.empty() ? "" : ": ", why);
  cove::v1::Event event;
  event.set_kind(cove::v1::EVENT_KIND_MACHINE_STATE_CHANGED);
  event.set_machine_name(name());
  *event.mutable_machine() = view();
  event.set_previous_state(previous);
  event.set_message(why);
  env_.events.Publish(std::move(event));
}

void Machine::Persist() {
  if (auto st = env_.store.Save(record_); !st.ok()) {
    spdlog::error("{}: cannot save machine.json: {}", name(), std::string(st.message()));
  }
}

void Machine::StartAgentLink() {
  listeners_.Clear();  // this boot's guest has said nothing yet
  agent_ = std::make_unique<AgentLink>(
      env_.loop, name(), record_.paths().agent_socket(),
      AgentLink::Callbacks{
          .on_hello = [this](const cove::agent::v1::Hello& h) { OnHello(h); },
          .on_heartbeat =
              [this](const cove::agent::v1::Heartbeat& hb) {
                health_->OnHeartbeat(
                    hb, static_cast<int64_t>(SteadyNowMs()),
                    TimeUtil::TimestampToMilliseconds(TimeUtil::GetCurrentTime()));
              },
          .on_lost =
              [this](const std::string& why) {
                spdlog::warn("{}: agent lost: {}", name(), why);
                cove::v1::Event event;
                event.set_kind(cove::v1::EVENT_KIND_AGENT_DISCONNECTED);
                event.set_machine_name(name());
                *event.mutable_machine() = view();
                event.set_message(why);
                env_.events.Publish(std::move(event));
              },
          .on_shutdown_ack = [this]() { spdlog::info("{}: guest is powering off", name()); },
          .on_exec_exited =
              [this](const cove::agent::v1::ExecExited& exited) {
                if (auto it = execs_.find(exited.stream_id()); it != execs_.end()) {
                  it->second->OnExited(exited);
                }
              },
          .on_service_status =
              [this](const cove::agent::v1::ServiceStatus& status) { OnServiceStatus(status); },
          .on_listeners =
              [this](const cove::agent::v1::Listeners& listeners) {
                listeners_ = listeners;
                if (listeners_.listeners_size() > kMaxGuestListeners) {
                  // Each forward holds a host socket: a guest must not be
                  // able to make coved open them without end.
                  spdlog::warn("{}: the guest reports {} listeners; forwarding the first {}",
                               name(), listeners_.listeners_size(), kMaxGuestListeners);
                  listeners_.mutable_listeners()->DeleteSubrange(
                      kMaxGuestListeners, listeners_.listeners_size() - kMaxGuestListeners);
                }
                if (ports_) ports_->OnListeners(listeners_);
              },
          .on_guest_open =
              [this](uint32_t id, const cove::agent::v1::StreamOpen& what) {
                return OnGuestOpen(id, what);
              },
          .on_mount_status =
              [this](const cove::agent::v1::MountStatus& status) {
                mounts_->OnMountStatus(status);
                MaybeBecomeRunning();
              },
          .on_watched_dirs =
              [this](const cove::agent::v1::WatchedDirs& dirs) { mounts_->OnWatchedDirs(dirs); },
          .on_emulation =
              [this](const cove::agent::v1::Emulation& e) { OnEmulation(e); },
          .on_oom_kill =
              [this](const cove::agent::v1::OomKill& kill) {
                health_->OnOomKill(kill, static_cast<int64_t>(SteadyNowMs()),
                                   TimeUtil::TimestampToMilliseconds(TimeUtil::GetCurrentTime()));
              },
      });
  std::vector<cove::agent::v1::ReverseSocket> reverse;
  for (const auto& r : record_.spec().reverse_sockets()) {
    cove::agent::v1::ReverseSocket rs;
    rs.set_name(r.name());
    rs.set_guest_path(r.guest_path());
    reverse.push_back(std::move(rs));
  }
  agent_->Configure({.services = WantedServices(),
                     .reverse_sockets = std::move(reverse),
                     .mounts = mounts_->GuestMounts(),
                     .foreign_binaries = !record_.spec().no_foreign_binaries()});
  agent_->Start();
}

void Machine::OnHello(const cove::agent::v1::Hello& hello) {
  auto* g = record_.mutable_guest();
  g->set_agent_version(Bounded(hello.agent_version()));
  g->set_kernel_release(Bounded(hello.kernel_release()));
  g->set_arch(Bounded(hello.arch()));
  g->set_boot_to_agent_ms(hello.boot_to_agent_ms());
  *g->mutable_last_heartbeat() = TimeUtil::GetCurrentTime();
  health_->OnHello(hello, static_cast<int64_t>(SteadyNowMs()));
  guest_seen_ = true;
  life_check_.Stop();
  cove::v1::Event event;
  event.set_kind(cove::v1::EVENT_KIND_AGENT_CONNECTED);
  event.set_machine_name(name());
  event.set_message(
      absl::StrCat("cove-agent ", hello.agent_version(), " on ", hello.kernel_release()));
  *event.mutable_machine() = view();
  env_.events.Publish(std::move(event));
  for (auto& f : socket_forwards_) f->OnLinkReady();
  if (ports_) ports_->OnLinkReady();
  if (state() == cove::v1::MACHINE_STATE_STARTING && start_progress_) {
    start_progress_(cove::v1::START_PHASE_STARTING_RUNTIME,
                    absl::StrCat("guest agent up after ", SteadyNowMs() - launch_ms_,
                                 " ms; waiting for ", RuntimeService()));
  }
}

void Machine::OnEmulation(const cove::agent::v1::Emulation& emulation) {
  record_.clear_binfmt_handlers();
  record_.clear_emulated();
  for (const std::string& h : emulation.handlers()) {
    if (record_.binfmt_handlers_size() == kMaxGuestServices) break;
    record_.add_binfmt_handlers(Bounded(h));
  }
  for (const auto& p : emulation.processes()) {
    if (record_.emulated_size() == kMaxGuestListeners) break;
    auto* out = record_.add_emulated();
    out->set_pid(p.pid());
    out->set_comm(Bounded(p.comm()));
    out->set_arch(Bounded(p.arch()));
    out->set_cgroup(Bounded(p.cgroup()));
    out->set_rss_bytes(p.rss_bytes());
    out->set_container_id(Bounded(p.container_id()));
    out->set_container_name(Bounded(p.container_name()));
  }
  if (!emulation.error().empty()) {
    spdlog::warn("{}: foreign binaries: {}", name(), Bounded(emulation.error()));
  }
}

void Machine::OnServiceStatus(const cove::agent::v1::ServiceStatus& status) {
  static constexpr const char* kStateNames[] = {"unknown", "starting", "ready", "restarting",
                                                "stopped"};
  const int state_index = status.state();
  cove::v1::ServiceInfo info;
  info.set_name(Bounded(status.name()));
  info.set_state(state_index >= 0 && state_index <= 4 ? kStateNames[state_index] : "unknown");
  info.set_pid(status.pid());
  info.set_restarts(status.restarts());
  info.set_last_exit(Bounded(status.last_exit()));
  bool replaced = false;
  for (auto& s : *record_.mutable_services()) {
    if (s.name() == info.name()) {
      s = info;
      replaced = true;
    }
  }
  if (!replaced && record_.services_size() >= kMaxGuestServices) {
    spdlog::warn("{}: ignoring guest service {}: already {} services", name(), info.name(),
                 kMaxGuestServices);
    return;
  }
  if (!replaced) *record_.add_services() = info;
  if (status.state() == cove::agent::v1::ServiceStatus::RESTARTING) {
    spdlog::warn("{}: guest service {} {}; the agent restarts it", name(), status.name(),
                 status.last_exit());
  }
  if (status.name() == RuntimeService() &&
      status.state() == cove::agent::v1::ServiceStatus::READY) {
    runtime_ready_ = true;
    MaybeBecomeRunning();
  }
}

void Machine::OpenSocketForwards() {
  CloseSocketForwards();
  struct Want {
    std::string name, guest_path;
    std::string* field;
  };
  auto* sockets = record_.mutable_sockets();
  std::vector<Want> wants = {
      {"containerd", "/run/containerd/containerd.sock", sockets->mutable_containerd()}};
  if (record_.spec().runtime() == cove::v1::RUNTIME_DOCKER) {
    wants.push_back({"docker", "/run/docker.sock", sockets->mutable_docker()});
  }
  for (const Want& w : wants) {
    cove::agent::v1::StreamOpen target;
    target.set_unix_connect(w.guest_path);
    auto fwd =
        std::make_unique<SocketForward>(env_.loop, absl::StrCat(name(), "/", w.name),
                                        absl::StrCat(record_.dir(), "/", w.name, ".sock"),
                                        std::move(target), [this]() { return agent_.get(); });
    if (auto st = fwd->Open(); !st.ok()) {
      spdlog::error("{}: {}", name(), std::string(st.message()));
      continue;
    }
    *w.field = fwd->host_path();
    socket_forwards_.push_back(std::move(fwd));
  }
  PortForward::Env ports_env{env_.loop, name(), env_.ports, [this]() { return agent_.get(); }};
  ports_env.open_lane = [this](uint16_t guest_port, VmInstance::LaneDone done) {
    if (!vm_) {
      done(absl::UnavailableError("the machine has no hypervisor process"));
      return;
    }
    vm_->OpenLane(guest_port, std::move(done));
  };
  ports_env.close_lane = [this](uint16_t host_port) {
    if (vm_) vm_->CloseLane(host_port);
  };
  ports_ = std::make_unique<PortForwarder>(
      std::move(ports_env), [this](const cove::v1::Forward& f) { OnForwardChange(f); });
  ports_->SetSpec(record_.spec());
  ports_->OnListeners(listeners_);
}

void Machine::CloseSocketForwards() {
  socket_forwards_.clear();
  record_.clear_sockets();
  if (ports_) {
    ports_->CloseAll();
    ports_.reset();
  }
  record_.clear_forwards();
}

cove::v1::Machine Machine::view() const {
  cove::v1::Machine out = record_;
  if (auto report = env_.accel.Report(record_.spec().arch()); report && report->ok()) {
    for (const auto& v : (*report)->verdicts) *out.add_accel_verdicts() = qemu::ToProto(v);
  }
  for (auto& m : mounts_->View()) *out.add_mounts() = std::move(m);
  if (ports_) {
    out.clear_forwards();
    for (auto& f : ports_->List()) *out.add_forwards() = std::move(f);
  }
  return out;
}

void Machine::OnForwardChange(const cove::v1::Forward& forward) {
  const ForwardKey key{forward.proto(), forward.host_ip(),
                       static_cast<uint16_t>(forward.host_port())};
  const std::string message = absl::StrCat(
      Describe(key), " -> guest ", Endpoint(forward.guest_ip(), forward.guest_port()), " ",
      ForwardStateName(forward.state()), forward.error().empty() ? "" : ": ", forward.error());
  if (forward.state() == cove::v1::FORWARD_STATE_CONFLICT ||
      forward.state() == cove::v1::FORWARD_STATE_FAILED) {
    spdlog::warn("{}: {}", name(), message);
  } else {
    spdlog::info("{}: {}", name(), message);
  }
  cove::v1::Event event;
  event.set_kind(cove::v1::EVENT_KIND_FORWARD_CHANGED);
  event.set_machine_name(name());
  *event.mutable_machine() = view();
  *event.mutable_forward() = forward;
  event.set_message(message);
  env_.events.Publish(std::move(event));
}

std::optional<StreamCallbacks> Machine::OnGuestOpen(uint32_t id,
                                                    const cove::agent::v1::StreamOpen& what) {
  if (what.has_exec_stderr_of()) {
    auto it = execs_.find(what.exec_stderr_of());
    if (it == execs_.end()) return std::nullopt;
    return it->second->StderrCallbacks(id);
  }
  if (what.has_reverse()) {
    for (const auto& r : record_.spec().reverse_sockets()) {
      if (r.name() != what.reverse()) continue;
      auto conn = StreamConn::ConnectUnix(env_.loop, r.host_path());
      if (!conn.ok()) {
        spdlog::warn("{}: reverse socket {}: {}", name(), r.name(),
                     std::string(conn.status().message()));
        return std::nullopt;
      }
      StreamConn* raw = conn->get();
      reverse_conns_.push_back(*std::move(conn));
      std::weak_ptr<bool> alive = alive_;
      raw->set_on_done([this, alive, raw]() {
        env_.loop.Post([this, alive, raw]() {
          if (alive.expired()) return;
          std::erase_if(reverse_conns_, [raw](const auto& c) { return c.get() == raw; });
        });
      });
      return raw->Adopt(*agent_, id);
    }
  }
  return std::nullopt;
}

void Machine::RefreshGuest(std::function<void()> done) {
  if (!agent_) {
    env_.loop.Post(std::move(done));
    return;
  }
  agent_->Refresh(kRefreshBoundMs, std::move(done));
}

absl::StatusOr<std::shared_ptr<ExecSession>> Machine::StartExec(
    const cove::v1::ExecStart& start, std::shared_ptr<ExecSession::Output> output) {
  if (state() != cove::v1::MACHINE_STATE_RUNNING || !agent_) {
    return absl::FailedPreconditionError(
        absl::StrCat("machine '", name(), "' is ", StateName(state()),
                     "; start it first (`cove start ", name(), "`)"));
  }
  ReapExecs();
  auto session = std::make_shared<ExecSession>(*agent_, std::move(output));
  std::string error;
  if (!session->Begin(start, &error)) return absl::UnavailableError(error);
  execs_[session->stream_id()] = session;
  return session;
}

void Machine::ReapExecs() {
  std::erase_if(execs_, [](const auto& kv) { return kv.second->finished(); });
}

void Machine::OnVmExit(const VmExit& exit) {
  // Called from inside the instance: destroy it only after it returns.
  env_.loop.Post([vm = std::shared_ptr<VmInstance>(std::move(vm_))]() {});
  CloseSocketForwards();
  if (agent_) {
    agent_->Stop();  // resets every stream: execs and reverse connections end
    execs_.clear();
    env_.loop.Post([agent = std::shared_ptr<AgentLink>(std::move(agent_))]() {});
  }
  record_.set_pid(0);
  record_.clear_guest();
  record_.clear_binfmt_handlers();
  record_.clear_emulated();
  health_->Clear();
  mounts_->Release();
  RemoveRunFiles();
  life_check_.Stop();
  const std::string fallback = std::exchange(accel_fallback_, "");
  const std::string failure = std::exchange(vm_failure_, "");
  if (state() == cove::v1::MACHINE_STATE_STARTING && !stop_requested_ &&
      (!fallback.empty() || ExitConvictsAccel(exit))) {
    std::string line = fallback;
    if (line.empty()) {
      AccelFailed(exit.reason);  // records the verdict and says so; qemu is gone already
      line = std::exchange(accel_fallback_, "");
    }
    // The same start goes on under tcg; its deadline still holds.
    return Boot(cove::v1::ACCEL_TCG, "", false,
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
  if (was_starting) FinishStart(absl::AbortedError(why));
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
  vm_ = *std::move(vm);
  record_.clear_guest();  // until the agent says hello again
  mounts_->Adopt();
  spdlog::info("{}: re-adopted qemu pid {}", name(), pid);
  // Connections wait for the agent session to come back.
  if (s == cove::v1::MACHINE_STATE_RUNNING) OpenSocketForwards();
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
  StartAgentLink();
}

void Machine::RemoveRunFiles() const {
  // qemu removes its pid file only when it exits cleanly.
  for (const std::string& path :
       {record_.paths().qmp_socket(), record_.paths().agent_socket(), record_.dir() + "/qemu.pid",
        record_.dir() + "/containerd.sock", record_.dir() + "/docker.sock"}) {
    if (::unlink(path.c_str()) == 0) spdlog::debug("{}: removed {}", name(), path);
  }
}

std::string Machine::SerialTail() const {
  const std::string tail = TailLines(record_.paths().serial_log(), 5);
  return tail.empty() ? "(no console output)" : tail;
}

}  // namespace cove::daemon
