// One machine's lifecycle, owned by the loop thread:
//
//   stopped --Start--> starting --runtime ready--> running --Stop--> stopping --> stopped
//      ^                  |                        |                              |
//      +---- error <------+------ qemu crashed ----+------------------------------+
//              |
//              +--(restart policy on-failure: after a backoff)--> starting
//
// One operation at a time: Start while starting or stopping, or Stop while
// stopping, is refused with FAILED_PRECONDITION; Stop while starting cancels
// the start. The hypervisor exiting at any time ends in stopped (the guest
// powered off) or error (a crash), with an event. A client's Start or Stop
// cancels a pending automatic restart and resets the restart count.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cove/v1/errors.pb.h"
#include "cove/v1/machines.pb.h"
#include "daemon/driver/driver.h"
#include "daemon/forward/port_forward.h"
#include "daemon/image/image_store.h"
#include "daemon/loop/event_loop.h"
#include "daemon/machine/accel_resolver.h"
#include "daemon/machine/boot.h"
#include "daemon/machine/event_bus.h"
#include "daemon/machine/exec_session.h"
#include "daemon/machine/guest_health.h"
#include "daemon/mount/mount_set.h"
#include "daemon/store/machine_store.h"

namespace cove::daemon {

class ExecTable;
class GuestForwards;

// What every machine shares. Outlives all machines.
struct MachineEnv {
  EventLoop& loop;
  Driver& driver;
  MachineStore& store;
  ImageStore& images;
  EventBus& events;
  AccelResolver& accel;
  // Host ports held by every machine's forwards.
  PortRegistry& ports;
  // cove-agent built for the host's architecture. A guest of another
  // architecture needs `<agent_path>-<arch>` (e.g. cove-agent-aarch64).
  std::string agent_path;
};

class Machine {
 public:
  // Progress of an operation: a phase (the enum value of StartPhase or
  // StopPhase) and a line for people. `done` runs once, last.
  using Progress = std::function<void(int phase, const std::string& message)>;
  using Done = std::function<void(absl::Status)>;

  // A clean stop's default budget before qemu is quit, then killed.
  static constexpr uint32_t kDefaultStopTimeoutS = 20;
  // A start's default budget, until the runtime answers.
  static constexpr uint32_t kDefaultStartTimeoutS = 180;
  // Under kvm or hvf a guest that printed nothing and whose agent did not
  // connect this long after qemu started is not running: the accelerator
  // does not work here (a PVM or half-working nested hypervisor).
  static constexpr uint64_t kAccelLifeBoundMs = 10000;

  Machine(MachineEnv& env, cove::v1::Machine record);
  ~Machine();

  // The machine as clients see it, with live forward connection counts.
  cove::v1::Machine view() const;
  const std::string& name() const { return record_.name(); }
  cove::v1::MachineState state() const { return record_.state(); }
  const cove::v1::MachineSpec& spec() const { return record_.spec(); }
  bool busy() const;
  // `status` tagged with `reason` (common/errors.h), naming this machine and
  // its state.
  absl::Status Tagged(absl::Status status, cove::v1::ErrorReason reason) const;

  // A client's start. Resets the automatic restart count.
  void Start(uint32_t timeout_s, Progress progress, Done done);
  // Replaces the port rules, or adds or removes a static forward; a running
  // machine re-decides its forwards at once. Checked input only (spec.h).
  // What `cove set` changes; each part that is set replaces the old value.
  // All or nothing: one bad part refuses the whole change.
  struct Settings {
    std::optional<google::protobuf::RepeatedPtrField<cove::v1::PortRule>> port_rules;
    std::optional<std::pair<cove::v1::RestartPolicy, uint32_t>> restart;  // policy, limit
    std::optional<bool> autostart;
    std::optional<cove::v1::Accel> accel;  // applies at the next start
    std::optional<bool> foreign_binaries;  // applies at the next start
    // Resolved already (ResolveMounts); only while stopped.
    std::optional<google::protobuf::RepeatedPtrField<cove::v1::Mount>> mounts;
    std::optional<bool> no_mounts;
    // Sizes, with the limits of create; only while stopped. The disk only
    // grows.
    std::optional<uint32_t> cpus;
    std::optional<uint64_t> memory_bytes;
    std::optional<uint64_t> disk_bytes;
    // The container runtime (both are in every image); only while stopped.
    std::optional<cove::v1::Runtime> runtime;
  };
  absl::Status ChangeSettings(const Settings& settings);
  // FAILED_PRECONDITION (MACHINE_NOT_STOPPED) unless the machine is stopped
  // (or failed) with no hypervisor left: "its WHAT change only while it is
  // stopped".
  absl::Status RequireStopped(const std::string& what) const;
  absl::Status AddStaticForward(const cove::v1::StaticForward& forward);
  absl::Status RemoveStaticForward(const cove::v1::StaticForward& forward);
  void Stop(bool force, uint32_t timeout_s, Progress progress, Done done);
  // At coved startup: re-attach to a hypervisor an earlier coved started.
  void Adopt();

  // The longest RefreshGuest waits for the agent's answer.
  static constexpr uint64_t kRefreshBoundMs = 3000;
  // Asks the guest agent to look again now (emulated processes and their
  // containers, memory, listeners) and runs `done` once view() shows what it
  // found, after kRefreshBoundMs at most, or at once without an agent.
  void RefreshGuest(std::function<void()> done);

  // Starts a command in the running guest; its output and exit go to
  // `output`. FAILED_PRECONDITION when the machine is not running.
  absl::StatusOr<std::shared_ptr<ExecSession>> StartExec(
      const cove::v1::ExecStart& start, std::shared_ptr<ExecSession::Output> output);

 private:
  void SetState(cove::v1::MachineState state, const std::string& why);
  // Publishes an event of `kind` about this machine (its name and view
  // filled in); `fill` adds the kind's own fields.
  void Publish(cove::v1::EventKind kind, const std::string& message,
               const std::function<void(cove::v1::Event&)>& fill = nullptr);
  void BeginStart(uint32_t timeout_s, const std::string& why, Progress progress, Done done);
  // Once the initrd is written: the deadline, the accelerator, the boot.
  void ContinueStart(uint32_t timeout_s);
  // After a failure: under the on-failure policy, schedules the next start
  // (1 s, 2 s, 4 s ... 30 s), or says why it will not.
  void MaybeRestart(const std::string& why);
  void Persist();
  // Launches qemu under `accel` (-cpu `cpu`, empty: the driver's default).
  // `on_trial`: auto chose a hardware accelerator, so a boot that shows it
  // does not work here falls back to tcg. `why` becomes accel_reason.
  void Launch(cove::v1::Accel accel, const std::string& cpu, bool on_trial, const std::string& why);
  LaunchSpec MakeLaunchSpec(cove::v1::Accel accel, const std::string& cpu = "") const;
  VmCallbacks MakeVmCallbacks();
  // The Boot of a hypervisor process just launched or adopted: its agent
  // link and its components. The link starts last.
  void BeginBoot(std::unique_ptr<VmInstance> vm);
  // kAccelLifeBoundMs after a hardware-accelerated launch: fails the
  // accelerator if the guest has shown no sign of life.
  void CheckGuestLife();
  bool ConsoleSilent() const;
  // The hypervisor will not run the guest again (qemu: internal-error).
  void OnVmStuck(const std::string& why);
  // The accelerator of this boot does not run the guest: on trial, record
  // the verdict and boot again under tcg; otherwise fail the start.
  void AccelFailed(const std::string& why);
  // Records that this boot's accelerator does not run the guest (the
  // verdict, the phase, the event); the line that says so.
  std::string RecordAccelFailure(const std::string& why);
  // A hypervisor exit during a trial that the accelerator is to blame for.
  bool ExitConvictsAccel(const VmExit& exit) const;
  void OnHello(const cove::agent::v1::Hello& hello);
  // Every component of the boot is ready (the runtime answers, every mount
  // is in place): the machine is running (from starting). A failure fails
  // the start.
  void MaybeBecomeRunning();
  void BecomeRunning();
  void OnMountChanged(const cove::v1::MountInfo& mount);
  // Applies `change` to a copy of the spec; keeps it if the port and
  // restart settings still check out, and re-decides the forwards of a
  // running machine.
  // `commit`, if given, runs once every check passed, before the new spec is
  // kept (it may still refuse: nothing changes then).
  absl::Status ChangeSpec(
      const std::function<absl::Status(cove::v1::MachineSpec&)>& change,
      const std::function<absl::Status(const cove::v1::MachineSpec&)>& commit = nullptr);
  void OnVmExit(const VmExit& exit);
  // The start fails with `reason` (common/errors.h) and `why`.
  void FailStart(const std::string& why, cove::v1::ErrorReason reason = cove::v1::START_FAILED);
  void FinishStart(absl::Status status);
  void FinishStop(const absl::Status& status);
  void EscalateStop(int phase);
  std::string SerialTail() const;
  // Sockets and the pid file of a hypervisor that is gone.
  void RemoveRunFiles() const;
  AgentLink* agent() { return boot_ ? &boot_->agent() : nullptr; }
  bool agent_ready() const { return boot_ && boot_->agent().ready(); }

  MachineEnv& env_;
  cove::v1::Machine record_;
  // While a hypervisor process exists: it, its agent link, and what lives as
  // long as it does.
  std::unique_ptr<Boot> boot_;
  // Components of boot_ the machine itself calls (null without a boot).
  GuestForwards* forwards_ = nullptr;
  ExecTable* execs_ = nullptr;
  // Components that outlive boots.
  std::unique_ptr<MountSet> mounts_;
  std::unique_ptr<GuestHealth> health_;
  Timer start_deadline_;
  Timer stop_step_;
  Timer restart_timer_;
  Timer life_check_;
  Progress start_progress_, stop_progress_;
  Done start_done_, stop_done_;
  int stop_phase_ = 0;
  // Counts starts, so a late initrd write knows whether its start still runs.
  uint64_t start_attempt_ = 0;
  uint32_t stop_timeout_s_ = 0;
  bool stop_requested_ = false;
  // The start under way was the restart policy's, not a client's.
  bool automatic_start_ = false;
  // Callbacks that may outlive the machine (the accelerator probe) hold a
  // weak reference to this and do nothing once it is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
