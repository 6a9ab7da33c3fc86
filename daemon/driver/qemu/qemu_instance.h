// One qemu process. Knows when it exits through a pidfd (children and adopted
// processes alike), and talks QMP to it. Loop thread only.
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "daemon/driver/driver.h"
#include "daemon/driver/qemu/qemu_argv.h"
#include "daemon/driver/qemu/qmp_client.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon::qemu {

class QemuInstance : public VmInstance {
 public:
  // `is_child`: started by this coved, so its exit status can be collected.
  QemuInstance(EventLoop& loop, LaunchSpec spec, int pid, bool is_child, VmCallbacks callbacks);
  ~QemuInstance() override;

  // Watches the process and connects QMP (retrying while qemu creates the
  // socket). Error if the process cannot be watched.
  absl::Status Begin();

  int pid() const override { return pid_; }
  bool RequestPowerdown() override;
  bool Quit() override;
  void Kill() override;
  void OpenLane(uint16_t guest_port, LaneDone done) override;
  void CloseLane(uint16_t host_port) override;

 private:
  // Lane changes run one at a time, so each hostfwd_add is matched with its
  // own `info usernet`; `next` starts the following one.
  using LaneOp = std::function<void(std::function<void()> next)>;
  void OnQmpReady();
  // Removes the user-net forwards to `guest_port` on 127.0.0.1 that are
  // neither lanes nor fixed forwards (a hostfwd_add whose port was not found).
  void RemoveUntrackedLanes(uint16_t guest_port);
  void QueueLaneOp(LaneOp op);
  void RunLaneOps();
  // QMP is away but may come back (qemu alive, reconnects left).
  bool QmpMayReturn() const;
  // `status` failed because QMP dropped: `op` goes back to the front of the
  // queue. False when the failure is to be reported.
  bool RetryLater(const absl::Status& status, LaneOp op);
  void AddLane(uint16_t guest_port, LaneDone done, std::function<void()> next);
  // A forward to `guest_port` on 127.0.0.1 that is neither a lane of ours
  // nor one of spec_.user_net_hostfwds.
  bool IsUntrackedLane(const UserNetForward& f, uint16_t guest_port) const;
  // hostfwd_remove of the forward on 127.0.0.1:`host_port`.
  void RemoveForward(uint16_t host_port,
                     std::function<void(absl::StatusOr<std::string>)> done = nullptr);
  void RemoveLane(uint16_t host_port, std::function<void()> next);
  // A human monitor command; its text answer.
  void Hmp(const std::string& command_line, std::function<void(absl::StatusOr<std::string>)> done);
  void ConnectQmp();
  void OnQmpClosed(const std::string& why);
  void Reap(int status);
  void OnProcessGone();
  void OnQmpEvent(const std::string& event, const nlohmann::json& data);
  std::string QemuLogTail() const;
  // The first line of qemu's own log that contains `needle` (lower case).
  std::string QemuLogLine(const std::string& needle) const;

  EventLoop& loop_;
  LaunchSpec spec_;
  int pid_;
  bool is_child_;
  VmCallbacks callbacks_;
  QmpClient qmp_;
  Timer qmp_retry_;
  Timer liveness_;                   // used only where pidfds are not available
  uv_poll_t* pidfd_poll_ = nullptr;  // freed in its close callback
  int pidfd_ = -1;
  int qmp_attempts_ = 0;
  bool guest_shutdown_ = false;
  bool guest_reset_ = false;
  bool quit_requested_ = false;
  bool exited_ = false;
  bool reaped_ = false;  // is_child_ only: waitpid already collected it
  int wait_status_ = 0;
  std::deque<LaneOp> lane_ops_;
  bool lane_op_running_ = false;
  // QMP was up, and lanes an earlier coved left (adopted qemu) are removed;
  // lane changes still wait whenever QMP is not connected.
  bool lanes_ready_ = false;
  bool stale_lanes_checked_ = false;
  std::set<uint16_t> lanes_;           // host ports of this coved's lanes
  std::set<uint16_t> fixed_forwards_;  // host ports of spec_.user_net_hostfwds
};

}  // namespace cove::daemon::qemu
