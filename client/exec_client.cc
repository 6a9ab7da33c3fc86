#include "client/exec_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace cove::client {
namespace {

// Signals arrive through a pipe that the input thread polls.
int g_signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_signal_pipe[1], &b, 1);
  (void)ignored;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Puts the terminal in raw mode for the life of the object.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    cfmakeraw(&raw);
    if (tcsetattr(fd_, TCSANOW, &raw) == 0) active_ = true;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(fd_, TCSANOW, &saved_);
  }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

cove::v1::TerminalSize CurrentSize(int fd) {
  cove::v1::TerminalSize size;
  winsize ws{};
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) {
    size.set_rows(ws.ws_row);
    size.set_cols(ws.ws_col);
  } else {
    size.set_rows(24);
    size.set_cols(80);
  }
  return size;
}

}  // namespace

int RunExec(Context& ctx, const ExecOptions& options) {
  grpc::ClientContext call;
  auto stream = ctx.machines().Exec(&call);
  std::mutex write_mu;  // stream writes come from the input thread only, but
                        // the final WritesDone may race it.

  cove::v1::ExecRequest first;
  auto* start = first.mutable_start();
  start->set_name(options.machine);
  for (const auto& a : options.argv) start->add_argv(a);
  for (const auto& e : options.env) start->add_env(e);
  start->set_workdir(options.workdir);
  start->set_tty(options.tty);
  if (options.tty) {
    *start->mutable_size() = CurrentSize(options.in_fd);
    if (const char* term = std::getenv("TERM")) start->set_term(term);
  }
  if (!stream->Write(first)) return Context::Fail(stream->Finish());

  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) g_signal_pipe[0] = g_signal_pipe[1] = -1;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  // Forwarded to the guest while the command runs; the caller's own
  // handling comes back after it (cove copy still waits for its tar).
  struct sigaction old_winch {};
  struct sigaction old_int {};
  struct sigaction old_term {};
  sigaction(SIGWINCH, &sa, &old_winch);
  if (!options.tty) {
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  std::unique_ptr<RawTerminal> raw;
  if (options.tty) raw = std::make_unique<RawTerminal>(options.in_fd);

  std::atomic<bool> finished{false};
  // Wakes the input thread's poll when the command has ended.
  int wake[2] = {-1, -1};
  if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) wake[0] = wake[1] = -1;
  // The input thread: stdin, terminal size changes and signals. Joined
  // before RunExec returns: it uses the stream and this frame, and callers
  // go on after it (cove copy waits for its tar).
  std::thread input([&]() {
    bool in_open = options.in_fd >= 0;
    if (!in_open) {
      cove::v1::ExecRequest eof;
      eof.set_stdin_eof(true);
      std::lock_guard<std::mutex> lock(write_mu);
      stream->Write(eof);
    }
    char buf[64 * 1024];
    while (!finished) {
      pollfd fds[3] = {{in_open ? options.in_fd : -1, POLLIN, 0},
                       {g_signal_pipe[0], POLLIN, 0},
                       {wake[0], POLLIN, 0}};
      if (poll(fds, 3, 500) <= 0) continue;
      if (fds[2].revents & POLLIN) break;
      if (fds[1].revents & POLLIN) {
        unsigned char sig;
        while (read(g_signal_pipe[0], &sig, 1) == 1) {
          cove::v1::ExecRequest req;
          if (sig == SIGWINCH) {
            if (!options.tty) continue;
            *req.mutable_resize() = CurrentSize(options.in_fd);
          } else {
            req.set_signal(sig);
          }
          std::lock_guard<std::mutex> lock(write_mu);
          stream->Write(req);
        }
      }
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = read(options.in_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        cove::v1::ExecRequest req;
        if (n <= 0) {
          in_open = false;
          if (options.tty) continue;  // a terminal gets EOF as ^D from the user
          req.set_stdin_eof(true);
        } else {
          req.set_stdin(std::string(buf, static_cast<size_t>(n)));
        }
        std::lock_guard<std::mutex> lock(write_mu);
        if (!stream->Write(req)) break;
      }
    }
  });
  auto stop_input = [&]() {
    finished = true;
    if (wake[1] >= 0) {
      ssize_t ignored = write(wake[1], "x", 1);
      (void)ignored;
    }
    call.TryCancel();  // a Write blocked on flow control returns
    input.join();
    sigaction(SIGWINCH, &old_winch, nullptr);
    if (!options.tty) {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
    }
    for (int fd : {wake[0], wake[1], g_signal_pipe[0], g_signal_pipe[1]}) {
      if (fd >= 0) close(fd);
    }
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  };

  cove::v1::ExecResponse resp;
  int code = 127;
  bool got_exit = false;
  while (stream->Read(&resp)) {
    if (resp.has_stdout()) {
      if (!WriteAll(options.out_fd, resp.stdout())) {
        call.TryCancel();  // our reader is gone (| head): the rest is not wanted
        break;
      }
    } else if (resp.has_stderr()) {
      WriteAll(options.err_fd, resp.stderr());
    } else if (resp.has_exit()) {
      got_exit = true;
      const auto& e = resp.exit();
      raw.reset();
      if (!e.error().empty()) {
        std::fprintf(stderr, "cove: %s\n", e.error().c_str());
        code = e.exit_code() > 0 ? e.exit_code() : 127;
      } else if (e.signal() > 0) {
        code = 128 + e.signal();
      } else {
        code = e.exit_code();
      }
      break;
    }
  }
  raw.reset();
  if (!got_exit) {
    finished = true;
    grpc::Status st;
    {
      std::lock_guard<std::mutex> lock(write_mu);
      st = stream->Finish();
    }
    stop_input();
    if (!st.ok()) return Context::Fail(st);
    std::fprintf(stderr, "cove: the command's output ended without an exit status\n");
    return 127;
  }
  stop_input();
  std::fflush(stdout);
  return code;
}

}  // namespace cove::client
