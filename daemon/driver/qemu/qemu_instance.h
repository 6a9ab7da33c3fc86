// One qemu process. Knows when it exits through a pidfd (children and adopted
// processes alike), and talks QMP to it. Loop thread only.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "daemon/driver/driver.h"
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

 private:
  void ConnectQmp();
  void OnQmpClosed(const std::string& why);
  void Reap(int status);
  void OnProcessGone();
  void OnQmpEvent(const std::string& event, const nlohmann::json& data);
  std::string QemuLogTail() const;

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
};

}  // namespace cove::daemon::qemu
