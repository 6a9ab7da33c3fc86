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
// Any cove.v1 enum value as the CLI and its JSON say it: its name without
// the enum's prefix, lower case (SERVICE_STATE_READY: "ready",
// LOG_SOURCE_CONSOLE: "console"); "" for UNSPECIFIED or an unknown value.
// One rule, from the proto itself, for every enum without a function above.
std::string EnumWordOf(const google::protobuf::EnumDescriptor* type, int value);
template <typename E>
std::string EnumWord(E value) {
  return EnumWordOf(google::protobuf::GetEnumDescriptor<E>(), static_cast<int>(value));
}

// "127.0.0.1:8080", "[::1]:8080".
std::string Endpoint(const std::string& ip, uint32_t port);

}  // namespace cove
