// machine.json: each machine's spec and last known state, one file per
// machine directory, always replaced atomically. The file is the protobuf
// JSON form of cove.v1.Machine, so what is saved is exactly what the API
// shows.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/paths.h"
#include "cove/v1/machines.pb.h"

namespace cove::daemon {

class MachineStore {
 public:
  explicit MachineStore(HomeLayout layout) : layout_(std::move(layout)) {}

  // One entry per machine directory. A directory whose machine.json is
  // missing or corrupt is returned in MACHINE_STATE_ERROR with the reason, so
  // the other machines keep working. Leftovers of interrupted creates and
  // deletes (".creating-*", ".deleting-*") and of interrupted atomic writes
  // (".tmp-*" in a machine directory) are removed.
  std::vector<cove::v1::Machine> LoadAll();

  absl::StatusOr<cove::v1::Machine> Load(const std::string& name);
  absl::Status Save(const cove::v1::Machine& machine);

  std::string dir(const std::string& name) const { return layout_.machine_dir(name); }
  std::string json_path(const std::string& name) const { return dir(name) + "/machine.json"; }
  // Where a machine is assembled before it appears under its name.
  std::string staging_dir(const std::string& name) const {
    return layout_.machines() + "/.creating-" + name;
  }

  // Where a machine is moved first when deleted, so a crash mid-delete
  // never leaves a machine without its machine.json.
  std::string deleting_dir(const std::string& name) const;

  // Serialisation, for tests.
  static std::string ToJson(const cove::v1::Machine& machine);
  static absl::StatusOr<cove::v1::Machine> FromJson(const std::string& json);

 private:
  static void RemoveTempFiles(const std::string& dir);

  HomeLayout layout_;
};

}  // namespace cove::daemon
