#include "daemon/driver/qemu/qemu_instance.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
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
      qmp_(loop, QmpClient::Callbacks{
                     .on_ready = [this]() { spdlog::debug("{}: QMP ready", spec_.name); },
                     .on_event = [this](const std::string& e,
                                        const nlohmann::json& d) { OnQmpEvent(e, d); },
                     .on_closed = [this](const std::string& why) { OnQmpClosed(why); }}),
      qmp_retry_(loop),
      liveness_(loop) {}

QemuInstance::~QemuInstance() {
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
  } else if (event == "GUEST_PANICKED") {
    if (callbacks_.on_guest_event) callbacks_.on_guest_event("panic");
  }
}

std::string QemuInstance::QemuLogTail() const {
  auto log = ReadFile(spec_.hypervisor_log);
  if (!log.ok()) return "";
  std::vector<std::string> lines = absl::StrSplit(*log, '\n', absl::SkipWhitespace());
  if (lines.size() > 3) lines.erase(lines.begin(), lines.end() - 3);
  return absl::StrJoin(lines, " | ");
}

void QemuInstance::OnProcessGone() {
  if (exited_) return;
  exited_ = true;
  if (pidfd_poll_ != nullptr) uv_poll_stop(pidfd_poll_);
  liveness_.Stop();
  qmp_retry_.Stop();
  qmp_.Close();
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

}  // namespace cove::daemon::qemu
