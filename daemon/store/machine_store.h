// machine.json: what coved keeps of each machine across its restarts, one
// file per machine directory, always replaced atomically. The file holds a
// versioned record (cove.store.v1.MachineRecord, daemon/store/machine_record.h),
// not the API's cove.v1.Machine: the store converts at its edge, so callers
// deal in cove.v1.Machine while the API and the file change shape apart.
// What is only live (forwards, mount states, sockets, guest telemetry and
// services) is not saved and comes back empty.
//
// Threading: stateless apart from the home layout; each machine's file has
// one writer, its Machine on the loop thread.
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
  // missing, corrupt or written by a newer cove is returned in
  // MACHINE_STATE_ERROR with the reason and without a spec, so the other
  // machines keep working; its file is left as it is. A file in an older
  // format is rewritten in the current one, the old file kept beside it as
  // machine.json.v<its version>. Leftovers of interrupted creates and
  // deletes (".creating-*", ".deleting-*") and of interrupted atomic writes
  // (".tmp-*" in a machine directory) are removed.
  std::vector<cove::v1::Machine> LoadAll();

  // Reads any format up to the current one (older ones migrated in memory).
  // FAILED_PRECONDITION for a newer format, DATA_LOSS for a broken file.
  absl::StatusOr<cove::v1::Machine> Load(const std::string& name);
  // FAILED_PRECONDITION for a machine in error without a spec (LoadAll's
  // stand-in for a file it could not read): that file is the user's to
  // repair, or a newer cove's, and is never overwritten.
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

  // machine.json's text for a machine (current format), and back from any
  // format Load reads.
  static std::string ToJson(const cove::v1::Machine& machine);
  static absl::StatusOr<cove::v1::Machine> FromJson(const std::string& json);

 private:
  struct Loaded;
  absl::StatusOr<Loaded> LoadRecord(const std::string& name);
  // Rewrites an older file in the current format, keeping the old text.
  absl::Status Upgrade(const std::string& name, const Loaded& loaded);
  static void RemoveTempFiles(const std::string& dir);

  HomeLayout layout_;
};

}  // namespace cove::daemon
