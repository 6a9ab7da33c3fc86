// coved's top level: builds every component, serves the API on the unix
// socket, runs the loop until SIGTERM/SIGINT, and shuts down in order.
// Machines keep running across a coved restart and are re-adopted.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "common/paths.h"

namespace cove::daemon {

struct DaemonOptions {
  HomeLayout layout;
  std::string exe_dir;  // where coved's binary is; cove-agent is beside it
};

// Blocks until the daemon is told to stop. Errors are startup failures.
absl::Status RunDaemon(const DaemonOptions& options);

}  // namespace cove::daemon
