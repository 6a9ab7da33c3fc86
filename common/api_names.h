// The words cove uses for API enums, in logs, messages, the CLI and its JSON:
// "running", "kvm". One place, so coved and cove never disagree.
#pragma once

#include "cove/v1/machines.pb.h"

namespace cove {

// "stopped", "starting", "running", "stopping", "error"; "unknown" otherwise.
const char* StateName(cove::v1::MachineState state);
// "auto", "kvm", "hvf", "tcg"; "" for UNSPECIFIED.
const char* AccelName(cove::v1::Accel accel);

}  // namespace cove
