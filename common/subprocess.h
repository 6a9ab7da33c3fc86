// Running helper programs (qemu-img, qemu probes, coved from the CLI) with an
// argv, never through a shell: names and paths come from users.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cove {

struct CommandResult {
  int exit_code = -1;      // -1 if killed by a signal
  int term_signal = 0;     // the signal that ended it, or 0
  bool timed_out = false;  // killed by us at the deadline
  std::string output;      // stdout and stderr interleaved, at most 64 KiB (the tail)
  bool ok() const { return exit_code == 0 && !timed_out; }
  // "exit status 1", "killed by signal 6 (Aborted)", "timed out after 5 s".
  std::string Describe() const;
};

// Runs argv[0] (searched in PATH) and waits, at most `timeout`; past it the
// process is killed with SIGKILL. Blocking: not for the loop thread unless
// the command is known to be quick.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         std::chrono::milliseconds timeout);

// Starts argv in a new session with stdin from /dev/null and stdout/stderr
// appended to `log_path`, with default signal dispositions and an empty
// signal mask; does not wait. `pass_fd`, if not -1, becomes the child's fd 3
// (a listening socket handed over, say). Returns the pid.
absl::StatusOr<int> SpawnDetached(const std::vector<std::string>& argv, const std::string& log_path,
                                  int pass_fd = -1);

// First executable named `name` in $PATH, or NOT_FOUND.
absl::StatusOr<std::string> FindInPath(const std::string& name);

}  // namespace cove
