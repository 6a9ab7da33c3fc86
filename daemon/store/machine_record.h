// machine.json's contents: cove.store.v1.MachineRecord
// (proto/cove/store/v1/machine_record.proto), its JSON, the migration of older
// versions, and the conversion to and from the API's cove.v1.Machine. Only
// what coved keeps across its restarts crosses into the record; the API's
// live parts (guest, services, sockets, forwards, mounts, binfmt_handlers,
// emulated, accel_verdicts) do not, and come back empty.
//
// Pure functions; safe on any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "cove/store/v1/machine_record.pb.h"
#include "cove/v1/machines.pb.h"

namespace cove::daemon {

// The format_version this coved writes, and the newest it reads.
inline constexpr uint32_t kMachineRecordVersion = 1;

// format_version is set to kMachineRecordVersion.
cove::store::v1::MachineRecord ToRecord(const cove::v1::Machine& machine);
cove::v1::Machine FromRecord(const cove::store::v1::MachineRecord& record);

// machine.json's text: every field printed, defaults too, so the file reads
// (and can be repaired) without the schema at hand.
std::string RecordToJson(const cove::store::v1::MachineRecord& record);

struct ParsedRecord {
  // In this coved's version, migrated if the file was older.
  cove::store::v1::MachineRecord record;
  // The version the file was written in (0: no format_version).
  uint32_t file_version = 0;
};

// Reads machine.json's text in any version up to kMachineRecordVersion.
// FAILED_PRECONDITION for a newer version (a newer cove wrote it), DATA_LOSS
// for anything that is not a machine record.
absl::StatusOr<ParsedRecord> ParseRecordJson(const std::string& json);

}  // namespace cove::daemon
