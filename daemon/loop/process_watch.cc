#include "daemon/loop/process_watch.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace cove::daemon {

ProcessWatch::ProcessWatch(EventLoop& loop, int pid, bool is_child, Gone gone)
    : loop_(loop), pid_(pid), is_child_(is_child), on_gone_(std::move(gone)), poll_(loop) {}

ProcessWatch::~ProcessWatch() {
  if (pidfd_poll_ != nullptr) {
    uv_poll_stop(pidfd_poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(pidfd_poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  }
  if (pidfd_ >= 0) ::close(pidfd_);
}

absl::Status ProcessWatch::Begin() {
#ifdef SYS_pidfd_open
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
#else
  errno = ENOSYS;
#endif
  if (pidfd_ >= 0) {
    pidfd_poll_ = new uv_poll_t;
    uv_poll_init(loop_.uv(), pidfd_poll_, pidfd_);
    pidfd_poll_->data = this;
    uv_poll_start(pidfd_poll_, UV_READABLE,
                  [](uv_poll_t* h, int, int) { static_cast<ProcessWatch*>(h->data)->OnGone(); });
    return absl::OkStatus();
  }
  if (errno == ESRCH) return absl::NotFoundError(absl::StrCat("pid ", pid_, " is not running"));
  // No pidfd (old kernel, macOS): look once a second. A child must be reaped
  // to be seen gone (kill(pid, 0) succeeds on a zombie).
  poll_.Start(
      1000,
      [this]() {
        const bool ended = is_child_ ? ::waitpid(pid_, nullptr, WNOHANG | WNOWAIT) == pid_
                                     : ::kill(pid_, 0) != 0 && errno == ESRCH;
        if (ended) OnGone();
      },
      1000);
  return absl::OkStatus();
}

void ProcessWatch::Signal(int sig) {
  if (gone_) return;
#ifdef SYS_pidfd_send_signal
  if (pidfd_ >= 0 && ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) == 0) return;
#endif
  ::kill(pid_, sig);
}

void ProcessWatch::ReapWhenGone(std::unique_ptr<ProcessWatch> watch) {
  if (!watch) return;
  if (watch->gone()) return;  // destroyed here; already reaped
  ProcessWatch* raw = watch.release();
  raw->on_gone_ = [raw](const std::string&) { delete raw; };
}

void ProcessWatch::OnGone() {
  if (gone_) return;
  gone_ = true;
  if (pidfd_poll_ != nullptr) uv_poll_stop(pidfd_poll_);
  poll_.Stop();
  std::string how = "ended";
  if (is_child_) {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r == pid_ && WIFSIGNALED(status)) {
      how = absl::StrCat("was killed by signal ", WTERMSIG(status), " (",
                         strsignal(WTERMSIG(status)), ")");
    } else if (r == pid_ && WIFEXITED(status)) {
      how = absl::StrCat("exited with status ", WEXITSTATUS(status));
    }
  }
  // Last: the callback may destroy this watch.
  auto gone = on_gone_;
  if (gone) gone(how);
}

}  // namespace cove::daemon
