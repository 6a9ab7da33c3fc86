#include "guest/agent/streams/exec.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

bool MakePipe(UniqueFd& r, UniqueFd& w) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  r = UniqueFd(fds[0]);
  w = UniqueFd(fds[1]);
  return true;
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// In the child: report errno through `err_fd` and exit. Only async-signal-safe
// calls from here on.
// What failed in the child, reported with its errno.
enum ChildStep : int { kStepExec = 0, kStepCwd = 1, kStepTty = 2, kStepSetup = 3 };

[[noreturn]] void ChildFail(int err_fd, ChildStep step, int err) {
  const int report[2] = {step, err};
  ssize_t ignored = write(err_fd, report, sizeof(report));
  (void)ignored;
  _exit(127);
}

}  // namespace

std::vector<std::string> BaseEnvironment() {
  return {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=/root",
      "USER=root",
      "LOGNAME=root",
      "SHELL=/bin/sh",
      "LANG=C.UTF-8",
  };
}

std::vector<char*> CStringArray(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

namespace {
rlim_t g_child_nofile = 0;  // the soft open-files limit the agent started with
}  // namespace

void RaiseOpenFilesLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  g_child_nofile = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
}

void ResetSignalsInChild() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (g_child_nofile != 0) {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = g_child_nofile;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

pid_t SpawnDetached(const std::vector<std::string>& argv_in, int log_fd, int oom_score_adj) {
  std::vector<std::string> env_store = BaseEnvironment();
  std::vector<std::string> argv_store = argv_in;
  std::vector<char*> envp = CStringArray(env_store);
  std::vector<char*> argv = CStringArray(argv_store);
  const pid_t pid = fork();
  if (pid != 0) return pid;
  ResetSignalsInChild();
  SetOomScoreAdj(oom_score_adj);
  setsid();
  const int null_fd = open("/dev/null", O_RDWR);
  if (null_fd >= 0) dup2(null_fd, 0);
  const int out_fd = log_fd >= 0 ? log_fd : null_fd;
  if (out_fd >= 0) {
    dup2(out_fd, 1);
    dup2(out_fd, 2);
  }
  if (chdir("/") != 0) _exit(127);
  execvpe(argv[0], argv.data(), envp.data());
  _exit(127);
}

void ResizePty(int pty_fd, unsigned rows, unsigned cols) {
  if (pty_fd < 0 || rows == 0 || cols == 0) return;
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  ioctl(pty_fd, TIOCSWINSZ, &ws);
}

SpawnedExec SpawnExec(const ExecOptions& options) {
  SpawnedExec out;
  if (options.argv.empty()) {
    out.error = "no command given";
    return out;
  }
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> env = BaseEnvironment();
  if (options.tty) {
    env.push_back("TERM=" + (options.term.empty() ? std::string("xterm-256color") : options.term));
  }
  for (const std::string& kv : options.env) env.push_back(kv);
  std::vector<char*> envp = CStringArray(env);
  std::vector<std::string> argv_store = options.argv;
  std::vector<char*> argv = CStringArray(argv_store);
  const std::string cwd = options.cwd.empty() ? "/" : options.cwd;

  UniqueFd in_r, in_w, out_r, out_w, err_r, err_w, status_r, status_w;
  UniqueFd master;
  std::string slave_name;
  if (options.tty) {
    master = UniqueFd(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master.valid() || grantpt(master.get()) != 0 || unlockpt(master.get()) != 0) {
      out.error = std::string("cannot open a pseudo-terminal: ") + std::strerror(errno);
      return out;
    }
    char name[128];
    if (ptsname_r(master.get(), name, sizeof(name)) != 0) {
      out.error = std::string("ptsname: ") + std::strerror(errno);
      return out;
    }
    slave_name = name;
    ResizePty(master.get(), options.rows, options.cols);
  } else if (!MakePipe(in_r, in_w) || !MakePipe(out_r, out_w) || !MakePipe(err_r, err_w)) {
    out.error = std::string("pipe: ") + std::strerror(errno);
    return out;
  }
  if (!MakePipe(status_r, status_w)) {
    out.error = std::string("pipe: ") + std::strerror(errno);
    return out;
  }

  pid_t pid = fork();
  if (pid < 0) {
    out.error = std::string("fork: ") + std::strerror(errno);
    return out;
  }
  if (pid == 0) {
    const int ef = status_w.get();
    ResetSignalsInChild();
    SetOomScoreAdj(0);  // not the agent's -1000: a command is what gets killed
    if (setsid() < 0) ChildFail(ef, kStepSetup, errno);
    int in_fd, out_fd, err_fd;
    if (options.tty) {
      int slave = open(slave_name.c_str(), O_RDWR);
      if (slave < 0 || ioctl(slave, TIOCSCTTY, 0) != 0) ChildFail(ef, kStepTty, errno);
      in_fd = out_fd = err_fd = slave;
    } else {
      in_fd = in_r.get();
      out_fd = out_w.get();
      err_fd = err_w.get();
    }
    // dup2 clears close-on-exec on the copies; the originals close at exec.
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
      ChildFail(ef, kStepSetup, errno);
    }
    if (chdir(cwd.c_str()) != 0) ChildFail(ef, kStepCwd, errno);
    execvpe(argv[0], argv.data(), envp.data());
    ChildFail(ef, kStepExec, errno);
  }

  // Parent: the pipe closes at the child's exec (close-on-exec), or carries
  // its errno.
  status_w.reset();
  in_r.reset();
  out_w.reset();
  err_w.reset();
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(status_r.get(), report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(report))) {
    const char* what = report[0] == kStepExec  ? options.argv[0].c_str()
                       : report[0] == kStepCwd ? "working directory"
                       : report[0] == kStepTty ? "terminal"
                                               : "process setup";
    out.error = std::string(what) + ": " + std::strerror(report[1]);
    if (report[0] == kStepCwd)
      out.error = "working directory " + cwd + ": " + std::strerror(report[1]);
    // The child exits at once; the agent's SIGCHLD handling reaps it.
    return out;
  }
  out.pid = pid;
  if (options.tty) {
    SetNonBlocking(master.get());
    out.pty = std::move(master);
  } else {
    SetNonBlocking(in_w.get());
    SetNonBlocking(out_r.get());
    SetNonBlocking(err_r.get());
    out.stdin_w = std::move(in_w);
    out.stdout_r = std::move(out_r);
    out.stderr_r = std::move(err_r);
  }
  return out;
}

}  // namespace cove::agent
