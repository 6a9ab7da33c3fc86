// The words cove uses for API enums, in logs, messages, the CLI and its JSON:
// "running", "kvm". One place, so coved and cove never disagree.
#pragma once

#include <cstdint>
#include <string>

#include "cove/v1/machines.pb.h"

namespace cove {

// "stopped", "starting", "running", "stopping", "error"; "unknown" otherwise.
const char* StateName(cove::v1::MachineState state);
// "auto", "kvm", "hvf", "tcg"; "" for UNSPECIFIED.
const char* AccelName(cove::v1::Accel accel);
// "pending", "listening", "conflict", "failed", "closing", "closed";
// "unknown" otherwise.
const char* ForwardStateName(cove::v1::ForwardState state);
// "tcp", "udp"; "any" for UNSPECIFIED (in a rule).
const char* ProtoName(cove::v1::Proto proto);
// "127.0.0.1:8080", "[::1]:8080".
std::string Endpoint(const std::string& ip, uint32_t port);

}  // namespace cove
