#include "daemon/driver/qemu/qemu_instance.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "daemon/driver/qemu/qemu_argv.h"
#include "spdlog/spdlog.h"

namespace cove::daemon::qemu {
namespace {

// QMP socket: qemu creates it within milliseconds of starting, but a loaded
// host can take longer. 25 ms * 400 = 10 s.
constexpr int kQmpConnectAttempts = 400;
constexpr uint64_t kQmpRetryMs = 25;

int PidfdOpen(int pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace

QemuInstance::QemuInstance(EventLoop& loop, LaunchSpec spec, int pid, bool is_child,
                           VmCallbacks callbacks)
    : loop_(loop),
      spec_(std::move(spec)),
      pid_(pid),
      is_child_(is_child),
      callbacks_(std::move(callbacks)),
      qmp_(loop,
           QmpClient::Callbacks{.on_ready = [this]() { OnQmpReady(); },
                                .on_event = [this](const std::string& e,
                                                   const nlohmann::json& d) { OnQmpEvent(e, d); },
                                .on_closed = [this](const std::string& why) { OnQmpClosed(why); }}),
      qmp_retry_(loop),
      liveness_(loop) {
  // "tcp:127.0.0.1:25201-:5201": the host port is the last field before '-'.
  for (const std::string& fwd : spec_.user_net_hostfwds) {
    const std::string host = fwd.substr(0, fwd.find('-'));
    uint32_t port = 0;
    if (absl::SimpleAtoi(host.substr(host.rfind(':') + 1), &port) && port <= 65535) {
      fixed_forwards_.insert(static_cast<uint16_t>(port));
    }
  }
}

QemuInstance::~QemuInstance() {
  // An exchange still in flight ends with an error; nothing after it runs.
  lane_ops_.clear();
  lanes_ready_ = false;
  qmp_.Close();
  if (pidfd_poll_ != nullptr) {
    uv_poll_stop(pidfd_poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(pidfd_poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

absl::Status QemuInstance::Begin() {
  pidfd_ = PidfdOpen(pid_);
  if (pidfd_ >= 0) {
    pidfd_poll_ = new uv_poll_t;
    uv_poll_init(loop_.uv(), pidfd_poll_, pidfd_);
    pidfd_poll_->data = this;
    uv_poll_start(pidfd_poll_, UV_READABLE, [](uv_poll_t* h, int, int) {
      static_cast<QemuInstance*>(h->data)->OnProcessGone();
    });
  } else if (errno == ESRCH) {
    return absl::NotFoundError(absl::StrCat("qemu (pid ", pid_, ") is not running"));
  } else {
    // No pidfd (old kernel, macOS): check once a second. A child must be
    // reaped to be seen gone (kill(pid, 0) succeeds on a zombie).
    liveness_.Start(
        1000,
        [this]() {
          if (is_child_) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
              Reap(status);
              OnProcessGone();
            }
          } else if (::kill(pid_, 0) != 0 && errno == ESRCH) {
            OnProcessGone();
          }
        },
        1000);
  }
  ConnectQmp();
  return absl::OkStatus();
}

void QemuInstance::ConnectQmp() {
  if (exited_) return;
  qmp_.Connect(spec_.qmp_socket);
}

void QemuInstance::OnQmpClosed(const std::string& why) {
  // A failed connect (qemu has not made the socket yet) or a broken
  // connection: try again shortly, never tearing down a live one.
  if (exited_) return;
  if (++qmp_attempts_ >= kQmpConnectAttempts) {
    spdlog::warn("{}: giving up on QMP at {}: {}", spec_.name, spec_.qmp_socket, why);
    RunLaneOps();  // they fail now rather than wait for ever
    return;
  }
  qmp_retry_.Start(kQmpRetryMs, [this]() { ConnectQmp(); });
}

void QemuInstance::Reap(int status) {
  reaped_ = true;
  wait_status_ = status;
}

void QemuInstance::OnQmpEvent(const std::string& event, const nlohmann::json& data) {
  spdlog::info("{}: QMP event {} {}", spec_.name, event, data.dump());
  if (event == "SHUTDOWN") {
    // With -no-reboot a guest reboot or panic arrives as reason
    // "guest-reset" (or "guest-panic"): not a clean power off.
    const std::string reason = data.value("reason", "");
    if (reason == "guest-reset" || reason == "guest-panic") {
      guest_reset_ = true;
    } else if (data.value("guest", false)) {
      guest_shutdown_ = true;
    }
  } else if (event == "RESET") {
    if (callbacks_.on_guest_event) callbacks_.on_guest_event("reset");
  } else if (event == "STOP") {
    if (callbacks_.on_guest_event) callbacks_.on_guest_event("stop");
    // Nothing of ours pauses the guest, so a STOP is qemu giving up on it:
    // ask why.
    qmp_.Execute("query-status", nullptr, [this](absl::Status st, const nlohmann::json& result) {
      if (!st.ok() || !result.is_object()) return;
      const std::string status = result.value("status", "");
      spdlog::warn("{}: qemu stopped the guest: run state {}", spec_.name, status);
      if (status != "internal-error" || !callbacks_.on_stuck) return;
      const std::string detail = QemuLogLine("internal error");
      callbacks_.on_stuck(absl::StrCat("qemu stopped the guest (run state internal-error)",
                                       detail.empty() ? "" : ": ", detail));
    });
  } else if (event == "GUEST_PANICKED") {
    if (callbacks_.on_guest_event) callbacks_.on_guest_event("panic");
  }
}

std::string QemuInstance::QemuLogLine(const std::string& needle) const {
  auto log = ReadFile(spec_.hypervisor_log);
  if (!log.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*log, '\n')) {
    if (absl::StrContains(absl::AsciiStrToLower(line), needle)) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

std::string QemuInstance::QemuLogTail() const { return TailLines(spec_.hypervisor_log, 3); }

void QemuInstance::OnProcessGone() {
  if (exited_) return;
  exited_ = true;
  if (pidfd_poll_ != nullptr) uv_poll_stop(pidfd_poll_);
  liveness_.Stop();
  qmp_retry_.Stop();
  qmp_.Close();
  RunLaneOps();  // nothing to wait for now: each fails and says so
  VmExit exit;
  if (is_child_) {
    int status = wait_status_;
    pid_t r = pid_;
    if (!reaped_) {
      do {
        r = ::waitpid(pid_, &status, WNOHANG);
      } while (r < 0 && errno == EINTR);
    }
    if (r == pid_ && WIFSIGNALED(status)) {
      exit.reason = absl::StrCat("qemu was killed by signal ", WTERMSIG(status), " (",
                                 strsignal(WTERMSIG(status)), ")");
    } else if (r == pid_ && WIFEXITED(status) && WEXITSTATUS(status) != 0) {
      std::string tail = QemuLogTail();
      exit.reason = absl::StrCat("qemu exited with status ", WEXITSTATUS(status),
                                 tail.empty() ? "" : ": ", tail);
    } else if (guest_reset_) {
      exit.reason = "the guest rebooted or its kernel panicked";
    } else {
      exit.clean = true;
      exit.reason = guest_shutdown_ ? "guest powered off" : "qemu exited";
    }
  } else {
    // Not our child (an earlier coved started it): no exit status to read.
    exit.clean = guest_shutdown_ || quit_requested_;
    exit.reason = guest_shutdown_   ? "guest powered off"
                  : quit_requested_ ? "qemu quit"
                  : guest_reset_    ? "the guest rebooted or its kernel panicked"
                                    : absl::StrCat("qemu (pid ", pid_,
                                                   ") ended without a shutdown: killed or crashed "
                                                      "(its exit status went to the coved that "
                                                      "started it)");
  }
  if (quit_requested_ && !exit.clean && exit.reason.find("signal") == std::string::npos) {
    exit.clean = true;
  }
  spdlog::info("{}: qemu pid {} gone: {}", spec_.name, pid_, exit.reason);
  // Last: the callback may destroy this instance.
  auto on_exit = callbacks_.on_exit;
  if (on_exit) on_exit(exit);
}

bool QemuInstance::RequestPowerdown() {
  if (!qmp_.ready()) return false;
  qmp_.Execute("system_powerdown");
  return true;
}

bool QemuInstance::Quit() {
  if (!qmp_.ready()) return false;
  quit_requested_ = true;
  qmp_.Execute("quit");
  return true;
}

void QemuInstance::Kill() {
  if (!exited_) ::kill(pid_, SIGKILL);
}

void QemuInstance::OnQmpReady() {
  spdlog::debug("{}: QMP ready", spec_.name);
  qmp_attempts_ = 0;  // the reconnect budget is per outage, not per VM life
  if (stale_lanes_checked_ || is_child_) {
    // Lane changes asked for while QMP was away run now.
    lanes_ready_ = true;
    RunLaneOps();
    return;
  }
  // Adopted: the lanes of the coved that started this qemu lead to guest
  // ports nobody here knows about. They go before any new one is made.
  Hmp("info usernet", [this](absl::StatusOr<std::string> info) {
    if (!info.ok()) {
      spdlog::warn("{}: cannot list the user-mode network's forwards: {}", spec_.name,
                   std::string(info.status().message()));
      // QMP went away again: the next connection tries once more, and lane
      // changes wait for it. On a live connection, go on without.
      if (!qmp_.ready()) return;
    } else {
      for (const qemu::UserNetForward& f : ParseTcpHostForwards(*info)) {
        if (f.host_ip != "127.0.0.1" || fixed_forwards_.count(f.host_port)) continue;
        spdlog::info("{}: removing lane 127.0.0.1:{} to guest port {} left by an earlier coved",
                     spec_.name, f.host_port, f.guest_port);
        RemoveForward(f.host_port);
      }
    }
    stale_lanes_checked_ = true;
    lanes_ready_ = true;
    RunLaneOps();
  });
}

void QemuInstance::Hmp(const std::string& command_line,
                       std::function<void(absl::StatusOr<std::string>)> done) {
  qmp_.Execute("human-monitor-command", {{"command-line", command_line}},
               [done = std::move(done)](absl::Status st, const nlohmann::json& result) {
                 if (!st.ok()) {
                   done(st);
                   return;
                 }
                 done(result.is_string() ? result.get<std::string>() : std::string());
               });
}

bool QemuInstance::IsUntrackedLane(const UserNetForward& f, uint16_t guest_port) const {
  return f.host_ip == "127.0.0.1" && f.guest_port == guest_port && !lanes_.count(f.host_port) &&
         !fixed_forwards_.count(f.host_port);
}

void QemuInstance::RemoveForward(uint16_t host_port,
                                 std::function<void(absl::StatusOr<std::string>)> done) {
  Hmp(
      absl::StrCat("hostfwd_remove ", kUserNetId, " tcp:127.0.0.1:", host_port),
      done ? std::move(done) : [](absl::StatusOr<std::string>) {});
}

bool QemuInstance::QmpMayReturn() const { return !exited_ && qmp_attempts_ < kQmpConnectAttempts; }

bool QemuInstance::RetryLater(const absl::Status& status, LaneOp op) {
  if (status.ok() || qmp_.ready() || !QmpMayReturn()) return false;
  // QMP dropped under the op: it runs again, first, once QMP is back.
  lane_ops_.push_front(std::move(op));
  return true;
}

void QemuInstance::QueueLaneOp(LaneOp op) {
  lane_ops_.push_back(std::move(op));
  RunLaneOps();
}

void QemuInstance::RunLaneOps() {
  if (lane_op_running_ || lane_ops_.empty()) return;
  // Wait for QMP while it may come back; once it cannot (qemu gone, given
  // up), every op runs and fails at once, so each `done` still runs.
  if (QmpMayReturn() && (!lanes_ready_ || !qmp_.ready())) return;
  LaneOp op = std::move(lane_ops_.front());
  lane_ops_.pop_front();
  lane_op_running_ = true;
  op([this]() {
    lane_op_running_ = false;
    RunLaneOps();
  });
}

void QemuInstance::OpenLane(uint16_t guest_port, LaneDone done) {
  QueueLaneOp([this, guest_port, done = std::move(done)](std::function<void()> next) {
    AddLane(guest_port, done, std::move(next));
  });
}

void QemuInstance::AddLane(uint16_t guest_port, LaneDone done, std::function<void()> next) {
  // Port 0: the host's kernel picks a free port, read back from the list.
  Hmp(absl::StrCat("hostfwd_add ", kUserNetId, " tcp:127.0.0.1:0-:", guest_port),
      [this, guest_port, done, next](absl::StatusOr<std::string> added) {
        if (RetryLater(added.status(), [this, guest_port, done](std::function<void()> n) {
              AddLane(guest_port, done, std::move(n));
            })) {
          next();
          return;
        }
        // HMP answers success with nothing and failure with a message.
        if (added.ok() && !absl::StripAsciiWhitespace(*added).empty()) {
          added = absl::UnavailableError(absl::StripAsciiWhitespace(*added));
        }
        if (!added.ok()) {
          done(added.status());
          next();
          return;
        }
        Hmp("info usernet", [this, guest_port, done, next](absl::StatusOr<std::string> info) {
          absl::StatusOr<uint16_t> port = absl::NotFoundError(
              absl::StrCat("QEMU lists no new forward to guest port ", guest_port));
          if (!info.ok()) port = info.status();
          for (const qemu::UserNetForward& f :
               info.ok() ? ParseTcpHostForwards(*info) : std::vector<qemu::UserNetForward>{}) {
            if (IsUntrackedLane(f, guest_port)) {
              port = f.host_port;
              break;
            }
          }
          if (port.ok()) lanes_.insert(*port);
          // Anything else to that guest port that is not ours (an add whose
          // answer was lost with QMP, an add whose port was not found) goes.
          RemoveUntrackedLanes(guest_port);
          done(port);
          next();
        });
      });
}

void QemuInstance::RemoveUntrackedLanes(uint16_t guest_port) {
  QueueLaneOp([this, guest_port](std::function<void()> next) {
    Hmp("info usernet", [this, guest_port, next](absl::StatusOr<std::string> info) {
      if (info.ok()) {
        for (const qemu::UserNetForward& f : ParseTcpHostForwards(*info)) {
          if (IsUntrackedLane(f, guest_port)) RemoveForward(f.host_port);
        }
      }
      next();
    });
  });
}

void QemuInstance::CloseLane(uint16_t host_port) {
  QueueLaneOp([this, host_port](std::function<void()> next) { RemoveLane(host_port, next); });
}

void QemuInstance::RemoveLane(uint16_t host_port, std::function<void()> next) {
  RemoveForward(host_port, [this, host_port, next](absl::StatusOr<std::string> removed) {
    if (RetryLater(removed.status(), [this, host_port](std::function<void()> n) {
          RemoveLane(host_port, std::move(n));
        })) {
      next();
      return;
    }
    // Only now: until it is gone, a new lane to the same guest port must
    // not be mistaken for it.
    lanes_.erase(host_port);
    if (!removed.ok() || removed->find("removed") == std::string::npos) {
      spdlog::debug("{}: removing lane 127.0.0.1:{}: {}", spec_.name, host_port,
                    removed.ok() ? *removed : std::string(removed.status().message()));
    }
    next();
  });
}

}  // namespace cove::daemon::qemu
