#include "daemon/machine/machine.h"

#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/api_names.h"
#include "common/atomic_file.h"
#include "common/sizes.h"
#include "daemon/driver/qemu/accel_probe.h"
#include "daemon/image/agent_initrd.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

using cove::v1::MachineState;
using google::protobuf::util::TimeUtil;

uint64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr uint32_t kDefaultStartTimeoutS = 180;

}  // namespace

Machine::Machine(MachineEnv& env, cove::v1::Machine record)
    : env_(env), record_(std::move(record)), start_deadline_(env.loop), stop_step_(env.loop) {}

Machine::~Machine() {
  if (agent_) agent_->Stop();
}

bool Machine::busy() const {
  return state() == cove::v1::MACHINE_STATE_STARTING || state() == cove::v1::MACHINE_STATE_STOPPING;
}

void Machine::SetState(MachineState state, const std::string& why) {
  const MachineState previous = record_.state();
  record_.set_state(state);
  if (state == cove::v1::MACHINE_STATE_ERROR) record_.set_error(why);
  if (state == cove::v1::MACHINE_STATE_RUNNING) record_.clear_error();
  Persist();
  if (previous == state) return;
  spdlog::info("{}: {} -> {}{}{}", name(), StateName(previous), StateName(state),
               why.empty() ? "" : ": ", why);
  cove::v1::Event event;
  event.set_kind(cove::v1::EVENT_KIND_MACHINE_STATE_CHANGED);
  event.set_machine_name(name());
  *event.mutable_machine() = record_;
  event.set_previous_state(previous);
  event.set_message(why);
  env_.events.Publish(std::move(event));
}

void Machine::Persist() {
  if (auto st = env_.store.Save(record_); !st.ok()) {
    spdlog::error("{}: cannot save machine.json: {}", name(), std::string(st.message()));
  }
}

void Machine::Start(uint32_t timeout_s, Progress progress, Done done) {
  if (state() == cove::v1::MACHINE_STATE_RUNNING) {
    return done(
        absl::FailedPreconditionError(absl::StrCat("machine '", name(), "' is already running")));
  }
  if (busy() || vm_) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "machine '", name(), "' is ", vm_ && !busy() ? "still shutting down" : StateName(state()),
        "; wait for that to finish first")));
  }
  if (!record_.has_spec()) {
    return done(absl::FailedPreconditionError(
        absl::StrCat("machine '", name(), "' cannot start: ", record_.error())));
  }
  start_progress_ = std::move(progress);
  start_done_ = std::move(done);
  stop_requested_ = false;
  record_.clear_error();
  SetState(cove::v1::MACHINE_STATE_STARTING, "start requested");
  start_progress_(cove::v1::START_PHASE_PREPARING_DISK, "checking image and disk");

  auto image = env_.images.Load(record_.image().path(), /*verify_digests=*/false);
  if (!image.ok()) return FailStart(std::string(image.status().message()));
  if (image->sha256["rootfs.img"] != record_.image().rootfs_sha256() &&
      !record_.image().rootfs_sha256().empty()) {
    return FailStart(absl::StrCat("the image at ", image->path,
                                  " changed since this machine was created, so its disk no "
                                  "longer fits it; recreate the machine"));
  }
  const std::string dir = record_.dir();
  if (!std::filesystem::exists(record_.paths().disk())) {
    return FailStart(absl::StrCat("disk ", record_.paths().disk(), " is missing"));
  }
  const std::string& arch = record_.spec().arch();
  const std::string agent =
      arch == HostArch() ? env_.agent_path : absl::StrCat(env_.agent_path, "-", arch);
  if (!std::filesystem::exists(agent)) {
    return FailStart(absl::StrCat("no cove-agent for ", arch, " guests (looked for ", agent,
                                  "); this cove build has only the ", HostArch(),
                                  " agent, so use a ", HostArch(), " machine (--arch ", HostArch(),
                                  ")"));
  }
  if (auto st = WriteMachineInitrd(image->initrd, agent, dir + "/initrd.img"); !st.ok()) {
    return FailStart(std::string(st.message()));
  }

  start_deadline_.Start(static_cast<uint64_t>(timeout_s ? timeout_s : kDefaultStartTimeoutS) * 1000,
                        [this, timeout_s]() {
                          FailStart(absl::StrCat("the guest agent did not answer within ",
                                                 timeout_s ? timeout_s : kDefaultStartTimeoutS,
                                                 " s; last console lines: ", SerialTail()));
                        });

  cove::v1::Accel accel = record_.spec().accel();
  if (accel == cove::v1::ACCEL_AUTO || accel == cove::v1::ACCEL_UNSPECIFIED) {
    if (const char* env = std::getenv("COVE_ACCEL"); env && std::string(env) == "tcg") {
      accel = cove::v1::ACCEL_TCG;
    } else if (record_.spec().arch() != HostArch()) {
      accel = cove::v1::ACCEL_TCG;  // a foreign architecture is always emulated
    }
  }
  if (accel != cove::v1::ACCEL_AUTO && accel != cove::v1::ACCEL_UNSPECIFIED) return Boot(accel);
  start_progress_(cove::v1::START_PHASE_PROBING_ACCEL, "choosing the accelerator");
  std::weak_ptr<bool> alive = alive_;
  env_.accel.Resolve(
      record_.spec().arch(), [this, alive](absl::StatusOr<qemu::AccelReport> report) {
        if (alive.expired()) return;  // deleted while the probe ran
        if (state() != cove::v1::MACHINE_STATE_STARTING || vm_) return;  // cancelled meanwhile
        if (!report.ok()) return FailStart(std::string(report.status().message()));
        for (const auto& v : report->verdicts) {
          if (!v.usable) {
            start_progress_(cove::v1::START_PHASE_PROBING_ACCEL,
                            absl::StrCat(AccelName(v.accel), " unusable: ", v.reason));
          }
        }
        Boot(report->auto_accel);
      });
}

LaunchSpec Machine::MakeLaunchSpec(cove::v1::Accel accel) const {
  const std::string dir = record_.dir();
  LaunchSpec spec;
  spec.name = name();
  spec.arch = record_.spec().arch();
  spec.cpus = record_.spec().cpus();
  spec.memory_bytes = record_.spec().memory_bytes();
  spec.accel = accel;
  spec.kernel = record_.image().path() + "/vmlinuz";
  spec.initrd = dir + "/initrd.img";
  spec.disk = record_.paths().disk();
  spec.serial_log = record_.paths().serial_log();
  spec.qmp_socket = record_.paths().qmp_socket();
  spec.agent_socket = record_.paths().agent_socket();
  spec.pid_file = dir + "/qemu.pid";
  spec.hypervisor_log = dir + "/qemu.log";
  auto image = env_.images.Load(record_.image().path(), false);
  const std::string base =
      image.ok() ? image->kernel_cmdline : "console=ttyS0 root=/dev/vda rw quiet";
  if (image.ok()) spec.kernel = image->kernel;
  spec.cmdline = absl::StrCat(base, " cove.hostname=", name());
  return spec;
}

VmCallbacks Machine::MakeVmCallbacks() {
  return VmCallbacks{
      .on_exit = [this](const VmExit& exit) { OnVmExit(exit); },
      .on_guest_event =
          [this](const std::string& what) { spdlog::info("{}: guest {}", name(), what); },
  };
}

void Machine::Boot(cove::v1::Accel accel) {
  LaunchSpec spec = MakeLaunchSpec(accel);
  for (const std::string& stale : {spec.qmp_socket, spec.agent_socket, spec.pid_file}) {
    ::unlink(stale.c_str());
  }
  std::error_code ec;
  std::filesystem::rename(spec.serial_log, spec.serial_log + ".1", ec);
  start_progress_(cove::v1::START_PHASE_BOOTING,
                  absl::StrCat("qemu ", spec.arch, ", ", AccelName(accel), ", ", spec.cpus,
                               " CPUs, ", FormatSize(spec.memory_bytes)));
  launch_ms_ = NowMs();
  auto vm = env_.driver.Launch(spec, MakeVmCallbacks());
  if (!vm.ok()) return FailStart(std::string(vm.status().message()));
  vm_ = *std::move(vm);
  record_.set_pid(vm_->pid());
  record_.set_accel_in_use(accel);
  Persist();
  StartAgentLink();
  start_progress_(cove::v1::START_PHASE_WAITING_FOR_AGENT, "waiting for the guest agent");
}

void Machine::StartAgentLink() {
  agent_ = std::make_unique<AgentLink>(
      env_.loop, name(), record_.paths().agent_socket(),
      AgentLink::Callbacks{
          .on_hello = [this](const cove::agent::v1::Hello& h) { OnHello(h); },
          .on_heartbeat =
              [this](const cove::agent::v1::Heartbeat& hb) {
                auto* g = record_.mutable_guest();
                g->set_mem_total_bytes(hb.mem_total_bytes());
                g->set_mem_available_bytes(hb.mem_available_bytes());
                *g->mutable_last_heartbeat() = TimeUtil::GetCurrentTime();
              },
          .on_lost =
              [this](const std::string& why) {
                spdlog::warn("{}: agent lost: {}", name(), why);
                cove::v1::Event event;
                event.set_kind(cove::v1::EVENT_KIND_AGENT_DISCONNECTED);
                event.set_machine_name(name());
                *event.mutable_machine() = record_;
                event.set_message(why);
                env_.events.Publish(std::move(event));
              },
          .on_shutdown_ack = [this]() { spdlog::info("{}: guest is powering off", name()); },
      });
  agent_->Start();
}

void Machine::OnHello(const cove::agent::v1::Hello& hello) {
  auto* g = record_.mutable_guest();
  g->set_agent_version(hello.agent_version());
  g->set_kernel_release(hello.kernel_release());
  g->set_arch(hello.arch());
  g->set_boot_to_agent_ms(hello.boot_to_agent_ms());
  *g->mutable_last_heartbeat() = TimeUtil::GetCurrentTime();
  cove::v1::Event event;
  event.set_kind(cove::v1::EVENT_KIND_AGENT_CONNECTED);
  event.set_machine_name(name());
  event.set_message(
      absl::StrCat("cove-agent ", hello.agent_version(), " on ", hello.kernel_release()));
  if (state() == cove::v1::MACHINE_STATE_STARTING) {
    if (launch_ms_ != 0) g->set_start_to_ready_ms(NowMs() - launch_ms_);
    *record_.mutable_started_at() = TimeUtil::GetCurrentTime();
    start_deadline_.Stop();
    SetState(cove::v1::MACHINE_STATE_RUNNING,
             absl::StrCat("guest agent ready after ", g->start_to_ready_ms(), " ms"));
    *event.mutable_machine() = record_;
    env_.events.Publish(std::move(event));
    FinishStart(absl::OkStatus());
    return;
  }
  *event.mutable_machine() = record_;
  env_.events.Publish(std::move(event));
}

void Machine::OnVmExit(const VmExit& exit) {
  // Called from inside the instance: destroy it only after it returns.
  env_.loop.Post([vm = std::shared_ptr<VmInstance>(std::move(vm_))]() {});
  if (agent_) {
    agent_->Stop();
    env_.loop.Post([agent = std::shared_ptr<AgentLink>(std::move(agent_))]() {});
  }
  record_.set_pid(0);
  record_.clear_guest();
  ::unlink(record_.paths().qmp_socket().c_str());
  ::unlink(record_.paths().agent_socket().c_str());
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
  const std::string why = absl::StrCat(exit.reason, "; last console lines: ", SerialTail());
  SetState(cove::v1::MACHINE_STATE_ERROR, why);
  if (was_starting) FinishStart(absl::AbortedError(why));
}

void Machine::FailStart(const std::string& why) {
  start_deadline_.Stop();
  SetState(cove::v1::MACHINE_STATE_ERROR, why);
  if (vm_) vm_->Kill();  // OnVmExit cleans up
  FinishStart(absl::FailedPreconditionError(why));
}

void Machine::FinishStart(absl::Status status) {
  start_deadline_.Stop();
  start_progress_ = nullptr;
  if (auto done = std::move(start_done_); done) done(status);
  start_done_ = nullptr;
}

void Machine::Adopt() {
  const MachineState s = state();
  if (s != cove::v1::MACHINE_STATE_RUNNING && s != cove::v1::MACHINE_STATE_STARTING &&
      s != cove::v1::MACHINE_STATE_STOPPING) {
    return;
  }
  const int pid = record_.pid();
  auto vm = pid > 0
                ? env_.driver.Adopt(MakeLaunchSpec(record_.accel_in_use()), pid, MakeVmCallbacks())
                : absl::NotFoundError("no pid recorded");
  if (!vm.ok()) {
    record_.set_pid(0);
    record_.clear_guest();
    SetState(
        cove::v1::MACHINE_STATE_STOPPED,
        absl::StrCat("its qemu ended while coved was not running (", vm.status().message(), ")"));
    return;
  }
  vm_ = *std::move(vm);
  record_.clear_guest();  // until the agent says hello again
  spdlog::info("{}: re-adopted qemu pid {}", name(), pid);
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

std::string Machine::SerialTail() const {
  // Only the end: the console log of a long-running guest can be large.
  std::ifstream in(record_.paths().serial_log(), std::ios::binary);
  if (!in) return "(no console output)";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 16 * 1024);
  in.seekg(from);
  std::string tail(static_cast<size_t>(size - from), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  std::vector<std::string> lines = absl::StrSplit(tail, '\n', absl::SkipWhitespace());
  if (lines.empty()) return "(no console output)";
  if (lines.size() > 5) lines.erase(lines.begin(), lines.end() - 5);
  return absl::StrJoin(lines, " | ");
}

}  // namespace cove::daemon
