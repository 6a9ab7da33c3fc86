// Starting processes for exec streams: on pipes (stdin, stdout, stderr kept
// apart) or on a new pseudo-terminal (a login shell, `cove shell`).
//
// Each process leads its own session and process group, so a signal or a
// hangup reaches everything it started, and a dropped link can kill them all.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "guest/agent/core/unique_fd.h"

namespace cove::agent {

struct ExecOptions {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE on top of the base environment
  std::string cwd;
  bool tty = false;
  unsigned rows = 24;
  unsigned cols = 80;
  std::string term;
};

struct SpawnedExec {
  pid_t pid = -1;
  // With a tty: `pty` is the master (both ways). Without: the three pipes.
  UniqueFd pty;
  UniqueFd stdin_w;
  UniqueFd stdout_r;
  UniqueFd stderr_r;
  // Why the process could not start (then pid is -1), e.g. "nosuch: No such
  // file or directory".
  std::string error;
};

// The environment every exec starts from (PATH, HOME, USER, LANG).
std::vector<std::string> BaseEnvironment();

// argv or envp for execvpe: pointers into `strings` (which must outlive
// them), null-terminated. Built before fork: the child may not allocate.
std::vector<char*> CStringArray(std::vector<std::string>& strings);

// In a forked child, before exec: the agent blocks SIGTERM, SIGINT and
// SIGCHLD (they arrive through signalfds) and ignores SIGPIPE; a new program
// must start with neither. It also gets back the open-files limit the agent
// started with (see RaiseOpenFilesLimit). Async-signal-safe.
void ResetSignalsInChild();

// Starts argv (argv[0] searched on PATH, BaseEnvironment) in a session of
// its own, in /, at `oom_score_adj`, stdin /dev/null and stdout and stderr
// to `log_fd` (/dev/null when -1): a daemon or a one-off job that nothing
// waits for. The pid, or -1 (errno set). The caller reaps it.
pid_t SpawnDetached(const std::vector<std::string>& argv, int log_fd, int oom_score_adj);

// At agent start: the soft open-files limit up to the hard one, since every
// forwarded connection is a socket in the agent (1000 at once must work).
void RaiseOpenFilesLimit();

// Forks and execs. Returns after the child exec'd or failed to: a failure to
// exec is reported in `error`, not as a process that exits 127. All returned
// fds are non-blocking and close-on-exec.
SpawnedExec SpawnExec(const ExecOptions& options);

// Sets the terminal size of a pty master (the foreground job gets SIGWINCH).
void ResizePty(int pty_fd, unsigned rows, unsigned cols);

}  // namespace cove::agent
