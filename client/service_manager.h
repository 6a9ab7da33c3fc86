// `cove daemon`: coved as a login service. On Linux a systemd user unit
// with socket activation (coved.service + coved.socket in
// $XDG_CONFIG_HOME/systemd/user), on macOS a LaunchAgent
// (~/Library/LaunchAgents/dev.cove.coved.plist) loaded into gui/UID.
// Without a service manager (no user systemd, as in containers and CI) the
// files are still written, and start/stop act on coved directly.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/paths.h"

namespace cove::client {

struct ServiceStatus {
  std::vector<std::string> unit_files;  // where the units are (or would be)
  bool installed = false;               // every unit file is there
  // A service manager this user can talk to (systemd --user, launchd gui/UID).
  bool manager_available = false;
  std::string manager_note;  // why not, or what it is
  bool enabled = false;      // starts at login
  bool active = false;       // the manager runs coved (or holds its socket)
  int coved_pid = 0;         // a coved holding this home's lock, else 0
};

class ServiceManager {
 public:
  // `coved` is the absolute path of the coved binary to run.
  ServiceManager(HomeLayout layout, std::string coved);

  // Writes the unit files and, where a manager runs, enables and starts them
  // (a coved running outside it is stopped first; machines keep running).
  // Returns what was done, for the user.
  absl::StatusOr<std::string> Install();
  absl::StatusOr<std::string> Uninstall();
  ServiceStatus Status() const;
  // Through the manager when installed there; otherwise coved directly.
  absl::StatusOr<std::string> Start();
  absl::StatusOr<std::string> Stop();

  // The unit texts with this home and binary filled in (tests read them).
  std::vector<std::pair<std::string, std::string>> UnitFiles() const;

 private:
  absl::Status StopDirect(int pid) const;

  HomeLayout layout_;
  std::string coved_;
};

// The pid written in the lock file while a coved holds the lock, else 0.
int RunningCovedPid(const std::string& lock_path);

}  // namespace cove::client
