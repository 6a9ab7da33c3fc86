// Machine: the stop half of the lifecycle (see machine.h). A stop escalates
// step by step, each with a deadline: the agent powers the guest off, then
// the ACPI power button, then QMP quit, then SIGKILL.
#include "absl/strings/str_cat.h"
#include "common/errors.h"
#include "daemon/machine/machine.h"

namespace cove::daemon {
namespace {

constexpr uint64_t kQuitBudgetMs = 3000;
constexpr uint64_t kKillBudgetMs = 5000;

}  // namespace

void Machine::Stop(bool force, uint32_t timeout_s, Progress progress, Done done) {
  if (state() == cove::v1::MACHINE_STATE_STOPPING) {
    return done(Tagged(
        absl::FailedPreconditionError(absl::StrCat("machine '", name(), "' is already stopping")),
        cove::v1::MACHINE_BUSY));
  }
  const bool pending_restart = restart_timer_.active();
  restart_timer_.Stop();
  record_.set_restarts(0);
  if (!boot_) {
    if (state() == cove::v1::MACHINE_STATE_STARTING) {
      FinishStart(Tagged(absl::CancelledError("the start was cancelled by a stop"),
                         cove::v1::START_FAILED));
      SetState(cove::v1::MACHINE_STATE_STOPPED, "start cancelled");
    }
    progress(cove::v1::STOP_PHASE_STOPPED,
             pending_restart ? "not running; its pending automatic restart is cancelled"
                             : "already stopped");
    Persist();
    return done(absl::OkStatus());
  }
  if (state() == cove::v1::MACHINE_STATE_STARTING) {
    start_deadline_.Stop();
    FinishStart(
        Tagged(absl::CancelledError("the start was cancelled by a stop"), cove::v1::START_FAILED));
  }
  stop_progress_ = std::move(progress);
  stop_done_ = std::move(done);
  stop_requested_ = true;
  stop_timeout_s_ = timeout_s ? timeout_s : kDefaultStopTimeoutS;
  SetState(cove::v1::MACHINE_STATE_STOPPING, force ? "forced stop requested" : "stop requested");
  if (force) return EscalateStop(cove::v1::STOP_PHASE_KILL);
  EscalateStop(agent_ready() ? cove::v1::STOP_PHASE_AGENT_SHUTDOWN
                             : cove::v1::STOP_PHASE_ACPI_POWERDOWN);
}

void Machine::EscalateStop(int phase) {
  if (!boot_) return;
  VmInstance& vm = boot_->vm();
  stop_phase_ = phase;
  const uint64_t total_ms = uint64_t{stop_timeout_s_} * 1000;
  uint64_t budget = 0;
  switch (phase) {
    case cove::v1::STOP_PHASE_AGENT_SHUTDOWN:
      stop_progress_(phase, "asking the guest to power off");
      if (!boot_->agent().RequestShutdown())
        return EscalateStop(cove::v1::STOP_PHASE_ACPI_POWERDOWN);
      budget = total_ms * 6 / 10;
      break;
    case cove::v1::STOP_PHASE_ACPI_POWERDOWN:
      stop_progress_(phase, "pressing the ACPI power button");
      if (!vm.RequestPowerdown()) return EscalateStop(cove::v1::STOP_PHASE_QUIT);
      budget = total_ms * 4 / 10;
      break;
    case cove::v1::STOP_PHASE_QUIT:
      stop_progress_(phase, "the guest did not power off in time; quitting qemu");
      if (!vm.Quit()) return EscalateStop(cove::v1::STOP_PHASE_KILL);
      budget = kQuitBudgetMs;
      break;
    case cove::v1::STOP_PHASE_KILL:
      stop_progress_(phase, absl::StrCat("killing qemu (pid ", vm.pid(), ")"));
      vm.Kill();
      budget = kKillBudgetMs;
      break;
    default: {
      const std::string why =
          absl::StrCat("qemu (pid ", vm.pid(), ") did not exit even after SIGKILL; see coved.log");
      stop_requested_ = false;
      SetState(cove::v1::MACHINE_STATE_ERROR, why);
      FinishStop(absl::InternalError(why));
      return;
    }
  }
  stop_step_.Start(budget, [this, phase]() { EscalateStop(phase + 1); });
}

void Machine::FinishStop(const absl::Status& status) {
  stop_requested_ = false;
  if (status.ok() && stop_progress_) stop_progress_(cove::v1::STOP_PHASE_STOPPED, "stopped");
  stop_progress_ = nullptr;
  if (auto done = std::move(stop_done_); done) done(status);
  stop_done_ = nullptr;
}

}  // namespace cove::daemon
