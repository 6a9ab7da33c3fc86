// All machines of this cove home. Creates and deletes them, finds them for
// the API, and loads (and re-adopts) them when coved starts.
//
// Threading: loop thread only. The API layer reaches it through
// EventLoop::Call / Post.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/image/image_store.h"
#include "daemon/machine/machine.h"
#include "daemon/machine/spec.h"

namespace cove::daemon {

class MachineManager {
 public:
  explicit MachineManager(MachineEnv& env) : env_(env) {}

  // Reads every machine directory and re-adopts machines whose hypervisor
  // still runs.
  void LoadAll();

  // Starts every stopped (or failed) machine marked autostart. coved calls it
  // once, when it is the first coved since the host booted.
  void Autostart();

  // `spec` must be normalized and `image` loaded (digests checked) already,
  // off the loop thread.
  absl::StatusOr<cove::v1::Machine> Create(const std::string& name,
                                           const cove::v1::MachineSpec& spec,
                                           const ImageInfo& image);

  // NOT_FOUND with a hint when there is no such machine.
  absl::StatusOr<Machine*> Find(const std::string& name);

  // Removes a machine and its directory. A running machine is refused unless
  // `force`, in which case it is killed first. `done` runs once.
  void Delete(const std::string& name, bool force, Machine::Done done);

  std::vector<cove::v1::Machine> List() const;
  // Machine::RefreshGuest on `name` (every machine when empty); `done` runs
  // once, when all have answered or given up (Machine::kRefreshBoundMs).
  void RefreshGuests(const std::string& name, std::function<void()> done);
  // Names of machines created from the image at `path`.
  std::vector<std::string> UsersOfImage(const std::string& path) const;

 private:
  void Remove(const std::string& name);

  MachineEnv& env_;
  std::map<std::string, std::unique_ptr<Machine>> machines_;
};

}  // namespace cove::daemon
