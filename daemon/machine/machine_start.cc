// Machine: the start half of the lifecycle (see machine.h): the image and
// disk checks, the accelerator, the boot, and the fallback to tcg when the
// accelerator auto chose cannot run the guest after all.
#include <google/protobuf/util/time_util.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/api_names.h"
#include "common/errors.h"
#include "common/sizes.h"
#include "daemon/image/agent_initrd.h"
#include "daemon/machine/machine.h"
#include "daemon/machine/runtime_services.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

using google::protobuf::util::TimeUtil;

void Machine::Start(uint32_t timeout_s, Progress progress, Done done) {
  const bool pending_restart = restart_timer_.active();
  if (!busy() && !boot_) {
    restart_timer_.Stop();
    record_.set_restarts(0);
  }
  BeginStart(
      timeout_s,
      pending_restart ? "start requested (instead of the pending restart)" : "start requested",
      std::move(progress), std::move(done));
}

void Machine::MaybeRestart(const std::string& why) {
  const cove::v1::MachineSpec& spec = record_.spec();
  if (spec.restart() != cove::v1::RESTART_POLICY_ON_FAILURE) return;
  const uint32_t done = record_.restarts();
  if (done >= spec.max_restarts()) {
    record_.set_error(absl::StrCat(why, "; not restarted: ", done,
                                   " automatic restarts in a row already (the limit); start it "
                                   "with `cove start ",
                                   name(), "`"));
    Persist();
    spdlog::warn("{}: restart limit ({}) reached", name(), spec.max_restarts());
    return;
  }
  const uint64_t delay_ms =
      std::min<uint64_t>(uint64_t{1000} << std::min<uint32_t>(done, 5), 30 * 1000);
  spdlog::info("{}: restart {} of {} in {} ms (policy on-failure)", name(), done + 1,
               spec.max_restarts(), delay_ms);
  restart_timer_.Start(delay_ms, [this, why]() {
    if (state() != cove::v1::MACHINE_STATE_ERROR || boot_) return;
    record_.set_restarts(record_.restarts() + 1);
    automatic_start_ = true;
    BeginStart(
        0,
        absl::StrCat("restart ", record_.restarts(), " of ", record_.spec().max_restarts(),
                     " after: ", why),
        [](int, const std::string&) {},
        [this](const absl::Status& st) {
          if (!st.ok()) spdlog::warn("{}: restart failed: {}", name(), std::string(st.message()));
        });
  });
}

void Machine::BeginStart(uint32_t timeout_s, const std::string& why, Progress progress, Done done) {
  if (state() == cove::v1::MACHINE_STATE_RUNNING) {
    return done(Tagged(
        absl::FailedPreconditionError(absl::StrCat("machine '", name(), "' is already running")),
        cove::v1::MACHINE_NOT_STOPPED));
  }
  if (busy() || boot_) {
    return done(Tagged(absl::FailedPreconditionError(absl::StrCat(
                           "machine '", name(), "' is ",
                           boot_ && !busy() ? "still shutting down" : StateName(state()),
                           "; wait for that to finish first")),
                       cove::v1::MACHINE_BUSY));
  }
  if (!record_.has_spec()) {
    return done(Tagged(absl::FailedPreconditionError(
                           absl::StrCat("machine '", name(), "' cannot start: ", record_.error())),
                       cove::v1::INVALID_SPEC));
  }
  start_progress_ = std::move(progress);
  start_done_ = std::move(done);
  stop_requested_ = false;
  record_.clear_error();
  SetState(cove::v1::MACHINE_STATE_STARTING, why);
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
  // Building the initrd (the image's plus cove-agent, ~10 MB) takes ~100 ms:
  // off the loop, so other machines and List/Get never wait for it.
  start_progress_(cove::v1::START_PHASE_PREPARING_DISK, "adding cove-agent to the initrd");
  auto written = std::make_shared<absl::Status>();
  const uint64_t attempt = ++start_attempt_;
  std::weak_ptr<bool> alive = alive_;
  env_.loop.Offload(
      [written, initrd = image->initrd, agent, out = dir + "/initrd.img"]() {
        *written = WriteMachineInitrd(initrd, agent, out);
      },
      [this, alive, written, attempt, timeout_s]() {
        if (alive.expired()) return;  // deleted meanwhile
        // A stop cancelled this start meanwhile (and maybe another began).
        if (attempt != start_attempt_ || state() != cove::v1::MACHINE_STATE_STARTING || boot_) {
          return;
        }
        if (!written->ok()) return FailStart(std::string(written->message()));
        ContinueStart(timeout_s);
      });
}

void Machine::ContinueStart(uint32_t timeout_s) {
  start_deadline_.Start(static_cast<uint64_t>(timeout_s ? timeout_s : kDefaultStartTimeoutS) * 1000,
                        [this, timeout_s]() {
                          const uint32_t budget = timeout_s ? timeout_s : kDefaultStartTimeoutS;
                          if (agent_ready()) {
                            const std::string& runtime =
                                RuntimeFactsOf(record_.spec().runtime()).ready_service();
                            return FailStart(absl::StrCat(runtime, " did not become ready within ",
                                                          budget, " s; see `cove logs ", name(),
                                                          " --service ", runtime, "`"));
                          }
                          FailStart(absl::StrCat("the guest agent did not answer within ", budget,
                                                 " s; last console lines: ", SerialTail()));
                        });

  const std::string& arch = record_.spec().arch();
  const cove::v1::Accel requested = record_.spec().accel();
  const bool automatic =
      requested == cove::v1::ACCEL_AUTO || requested == cove::v1::ACCEL_UNSPECIFIED;
  if (requested == cove::v1::ACCEL_TCG) return Launch(cove::v1::ACCEL_TCG, "", false, "requested");
  if (automatic) {
    if (const char* env = std::getenv("COVE_ACCEL"); env && std::string(env) == "tcg") {
      return Launch(cove::v1::ACCEL_TCG, "", false, "auto: COVE_ACCEL=tcg in coved's environment");
    }
    if (arch != HostArch()) {
      return Launch(cove::v1::ACCEL_TCG, "", false,
                    absl::StrCat("auto: an ", arch, " guest on this ", HostArch(),
                                 " host is emulated, every instruction (tcg)"));
    }
  }
  start_progress_(cove::v1::START_PHASE_PROBING_ACCEL, "choosing the accelerator");
  std::weak_ptr<bool> alive = alive_;
  const uint64_t attempt = start_attempt_;
  env_.accel.Resolve(
      arch, [this, alive, requested, automatic, attempt](absl::StatusOr<AccelReport> report) {
        if (alive.expired()) return;  // deleted while the probe ran
        // Cancelled meanwhile, and maybe another start began: that one has
        // its own deadline and waits for the probe itself.
        if (attempt != start_attempt_ || state() != cove::v1::MACHINE_STATE_STARTING || boot_) {
          return;
        }
        if (!report.ok()) return FailStart(std::string(report.status().message()));
        if (!automatic) {
          // The user insists: no fallback, but the boot's own checks still fail
          // it fast (see CheckGuestLife), and the verdict is part of the story.
          const AccelVerdict* v = report->Find(requested);
          std::string why = absl::StrCat("requested (--accel ", AccelName(requested), ")");
          if (v != nullptr && !v->usable)
            absl::StrAppend(&why, "; verdict here: unusable: ", v->reason);
          return Launch(requested, v != nullptr && !v->cpu.empty() ? v->cpu : "host", false, why);
        }
        std::string why = "auto";
        for (const auto& v : report->verdicts) {
          if (v.usable || v.accel == cove::v1::ACCEL_TCG) continue;
          const std::string line = absl::StrCat(AccelName(v.accel), " unusable here: ", v.reason);
          start_progress_(cove::v1::START_PHASE_PROBING_ACCEL, line);
          absl::StrAppend(&why, ": ", line);
        }
        const AccelVerdict* chosen = report->Find(report->auto_accel);
        if (report->auto_accel == cove::v1::ACCEL_TCG) {
          absl::StrAppend(&why, "; tcg emulates every guest instruction (slow)");
        } else {
          absl::StrAppend(&why, ": ", AccelName(report->auto_accel), " works here (",
                          chosen != nullptr ? chosen->checked_by : "probe", ")");
        }
        Launch(report->auto_accel, chosen != nullptr ? chosen->cpu : "",
               report->auto_accel != cove::v1::ACCEL_TCG, why);
      });
}

LaunchSpec Machine::MakeLaunchSpec(cove::v1::Accel accel, const std::string& cpu) const {
  const std::string dir = record_.dir();
  LaunchSpec spec;
  spec.name = name();
  spec.arch = record_.spec().arch();
  spec.cpus = record_.spec().cpus();
  spec.memory_bytes = record_.spec().memory_bytes();
  spec.accel = accel;
  spec.cpu = cpu;
  spec.kernel = record_.image().path() + "/vmlinuz";
  spec.initrd = dir + "/initrd.img";
  spec.disk = record_.paths().disk();
  spec.serial_log = record_.paths().serial_log();
  spec.qmp_socket = record_.paths().debug_qmp_socket();
  spec.agent_socket = record_.paths().debug_agent_socket();
  spec.pid_file = dir + "/qemu.pid";
  spec.hypervisor_log = dir + "/qemu.log";
  auto image = env_.images.Load(record_.image().path(), false);
  const std::string base =
      image.ok() ? image->kernel_cmdline : "console=ttyS0 root=/dev/vda rw quiet";
  if (image.ok()) spec.kernel = image->kernel;
  // psi=1: memory pressure for Machine.guest (Debian's kernels build PSI
  // but leave it off unless asked).
  spec.cmdline = absl::StrCat(base, " psi=1 cove.hostname=", name());
  return spec;
}

VmCallbacks Machine::MakeVmCallbacks() {
  return VmCallbacks{
      .on_exit = [this](const VmExit& exit) { OnVmExit(exit); },
      .on_guest_event =
          [this](const std::string& what) { spdlog::info("{}: guest {}", name(), what); },
      .on_stuck = [this](const std::string& why) { OnVmStuck(why); },
  };
}

void Machine::Launch(cove::v1::Accel accel, const std::string& cpu, bool on_trial,
                     const std::string& why) {
  LaunchSpec spec = MakeLaunchSpec(accel, cpu);
  for (const std::string& stale : {spec.qmp_socket, spec.agent_socket, spec.pid_file}) {
    ::unlink(stale.c_str());
  }
  std::error_code ec;
  std::filesystem::rename(spec.serial_log, spec.serial_log + ".1", ec);
  start_progress_(cove::v1::START_PHASE_BOOTING,
                  absl::StrCat("qemu ", spec.arch, ", ", AccelName(accel), ", ", spec.cpus,
                               " CPUs, ", FormatSize(spec.memory_bytes)));
  if (auto st = mounts_->PrepareLaunch(record_.spec().mounts(), spec); !st.ok()) {
    return FailStart(std::string(st.message()));
  }
  const uint64_t launch_ms = SteadyNowMs();
  auto vm = env_.driver.Launch(spec, MakeVmCallbacks());
  if (!vm.ok()) {
    mounts_->Release();  // the virtiofsds started for it
    return FailStart(std::string(vm.status().message()));
  }
  record_.set_pid((*vm)->pid());
  record_.set_accel_in_use(accel);
  record_.set_accel_reason(why);
  Persist();
  BeginBoot(*std::move(vm));
  boot_->launch_ms = launch_ms;
  boot_->accel_on_trial = on_trial;
  boot_->agent().Start();
  if (accel != cove::v1::ACCEL_TCG) {
    life_check_.Start(kAccelLifeBoundMs, [this]() { CheckGuestLife(); });
  }
  start_progress_(cove::v1::START_PHASE_WAITING_FOR_AGENT, "waiting for the guest agent");
}

bool Machine::ConsoleSilent() const {
  std::error_code ec;
  const auto size = std::filesystem::file_size(record_.paths().serial_log(), ec);
  return ec || size == 0;
}

void Machine::CheckGuestLife() {
  // Under kvm or hvf our guest's init prints within a second and the agent
  // follows; a guest that has done neither in 10 s is not running at all.
  if (!boot_ || boot_->guest_seen || !ConsoleSilent() ||
      state() != cove::v1::MACHINE_STATE_STARTING) {
    return;
  }
  AccelFailed(absl::StrCat("the guest showed no sign of life within ", kAccelLifeBoundMs / 1000,
                           " s under ", AccelName(record_.accel_in_use()),
                           " (no console output, no agent)"));
}

void Machine::OnVmStuck(const std::string& why) {
  if (!boot_) return;
  if (state() == cove::v1::MACHINE_STATE_STARTING && !boot_->guest_seen &&
      record_.accel_in_use() != cove::v1::ACCEL_TCG) {
    return AccelFailed(why);
  }
  // The process lives on but will never run the guest again.
  spdlog::error("{}: {}", name(), why);
  boot_->vm_failure = why;
  boot_->vm().Kill();  // OnVmExit says why
}

void Machine::AccelFailed(const std::string& why) {
  life_check_.Stop();
  const cove::v1::Accel accel = record_.accel_in_use();
  if (!boot_->accel_on_trial) {
    return FailStart(
        absl::StrCat(AccelName(accel), " unusable here: ", why, "; this machine asks for --accel ",
                     AccelName(accel), ", so cove does not fall back: `cove set ", name(),
                     " --accel auto` lets it use what works here"),
        cove::v1::ACCEL_UNUSABLE);
  }
  boot_->accel_fallback = RecordAccelFailure(why);
  boot_->vm().Kill();  // OnVmExit boots again
}

std::string Machine::RecordAccelFailure(const std::string& why) {
  const cove::v1::Accel accel = record_.accel_in_use();
  std::string line = absl::StrCat(AccelName(accel), " unusable here: ", why);
  env_.accel.RecordBootFailure(record_.spec().arch(), accel,
                               absl::StrCat("a real boot (machine '", name(), "') failed: ", why));
  start_progress_(cove::v1::START_PHASE_ACCEL_FALLBACK,
                  absl::StrCat(line, "; booting again under tcg"));
  Publish(cove::v1::EVENT_KIND_ACCEL_FALLBACK, absl::StrCat(line, "; booting under tcg instead"));
  return line;
}

bool Machine::ExitConvictsAccel(const VmExit& exit) const {
  if (!boot_ || !boot_->accel_on_trial || boot_->guest_seen || exit.clean || !ConsoleSilent()) {
    return false;
  }
  // qemu names the accelerator when it is at fault ("KVM internal error",
  // "kvm_buf_set_msrs: Assertion"); a reset before the first console byte is
  // a triple fault, which the same kernel under tcg does not do.
  const std::string reason = absl::AsciiStrToLower(exit.reason);
  return absl::StrContains(reason, AccelName(record_.accel_in_use())) ||
         absl::StrContains(reason, "rebooted");
}

void Machine::MaybeBecomeRunning() {
  if (state() != cove::v1::MACHINE_STATE_STARTING || !agent_ready()) return;
  const std::optional<absl::Status> ready = boot_->Readiness();
  if (ready.has_value() && !ready->ok()) return FailStart(std::string(ready->message()));
  if (ready.has_value()) BecomeRunning();
}

void Machine::OnMountChanged(const cove::v1::MountInfo& mount) {
  if (state() == cove::v1::MACHINE_STATE_STARTING) {
    return MaybeBecomeRunning();  // a failure fails the start, naming the mount
  }
  Publish(cove::v1::EVENT_KIND_MOUNT_CHANGED,
          absl::StrCat(mount.mount().host_path(), " at ", mount.mount().guest_path(), ": ",
                       mount.state() == cove::v1::MOUNT_STATE_MOUNTED     ? "mounted"
                       : mount.state() == cove::v1::MOUNT_STATE_HOST_GONE ? "host directory gone"
                                                                          : "failed",
                       mount.error().empty() ? "" : ": ", mount.error()),
          [&mount](cove::v1::Event& event) { *event.mutable_mount() = mount; });
}

void Machine::BecomeRunning() {
  auto* g = record_.mutable_guest();
  if (boot_->launch_ms != 0) g->set_start_to_ready_ms(SteadyNowMs() - boot_->launch_ms);
  *record_.mutable_started_at() = TimeUtil::GetCurrentTime();
  start_deadline_.Stop();
  SetState(cove::v1::MACHINE_STATE_RUNNING,
           absl::StrCat(RuntimeFactsOf(record_.spec().runtime()).ready_service(), " ready ",
                        g->start_to_ready_ms(), " ms after qemu started"));
  FinishStart(absl::OkStatus());
}

void Machine::FailStart(const std::string& why, cove::v1::ErrorReason reason) {
  const bool automatic = automatic_start_;
  start_deadline_.Stop();
  SetState(cove::v1::MACHINE_STATE_ERROR, why);
  if (boot_) boot_->vm().Kill();  // OnVmExit cleans up
  FinishStart(Tagged(absl::FailedPreconditionError(why), reason));
  // A failed automatic restart counts against the limit and tries again.
  if (automatic) MaybeRestart(why);
}

void Machine::FinishStart(absl::Status status) {
  start_deadline_.Stop();
  automatic_start_ = false;
  start_progress_ = nullptr;
  if (auto done = std::move(start_done_); done) done(std::move(status));
  start_done_ = nullptr;
}

}  // namespace cove::daemon
