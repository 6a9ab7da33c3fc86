// Running a command in a guest over the Exec call, with the local terminal
// or plain file descriptors on this end. Used by `cove exec`, `cove shell`
// and `cove copy`.
#pragma once

#include <string>
#include <vector>

#include "client/context.h"

namespace cove::client {

struct ExecOptions {
  std::string machine;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string workdir;
  // Run on a guest pty and put the local terminal in raw mode (stdin must be
  // a terminal).
  bool tty = false;
  // Where stdin comes from (-1: none, the command reads EOF at once) and
  // where output goes.
  int in_fd = 0;
  int out_fd = 1;
  int err_fd = 2;
};

// Runs the command to its end and returns the exit code to exit with: the
// command's status, 128+N when killed by signal N, or 127 (with a message on
// stderr) when it could not start or the call failed. SIGINT and SIGTERM
// received here are passed to the command (without a tty; with one, ^C is
// just a byte for the guest terminal).
int RunExec(Context& ctx, const ExecOptions& options);

}  // namespace cove::client
