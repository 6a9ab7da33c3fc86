// Tells the loop when a process ends: through a pidfd, for children and for
// processes an earlier coved started alike (where pidfds are missing, a check
// once a second). Loop thread only; destroying it stops watching.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class ProcessWatch {
 public:
  // `how`: "exited with status 1", "killed by signal 9 (Killed)", or, for a
  // process that is not our child, "ended".
  using Gone = std::function<void(const std::string& how)>;

  // `is_child`: started by this coved, so its status can be collected (and
  // must be, or it stays a zombie).
  ProcessWatch(EventLoop& loop, int pid, bool is_child, Gone gone);
  ~ProcessWatch();
  ProcessWatch(const ProcessWatch&) = delete;
  ProcessWatch& operator=(const ProcessWatch&) = delete;

  // NOT_FOUND when the process is already gone.
  absl::Status Begin();
  int pid() const { return pid_; }
  bool gone() const { return gone_; }
  // Sends `sig` through the pidfd where there is one, so a pid reused after
  // the process ended is never hit. Does nothing once it is gone.
  void Signal(int sig);

  // Hands a watch over to itself: it lives on until its process ends, then
  // deletes itself (reaping a child), so an owner that goes first (a machine
  // deleted) leaves no zombie. `gone` is not called.
  static void ReapWhenGone(std::unique_ptr<ProcessWatch> watch);

 private:
  void OnGone();

  EventLoop& loop_;
  const int pid_;
  const bool is_child_;
  Gone on_gone_;
  Timer poll_;
  uv_poll_t* pidfd_poll_ = nullptr;  // freed in its close callback
  int pidfd_ = -1;
  bool gone_ = false;
};

}  // namespace cove::daemon
