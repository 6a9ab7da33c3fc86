// Parsing of the port flags: `--port-rule` (Lima's rule fields as
// key=value pairs) and the forward specs of `cove forward add|rm`.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cove/v1/machines.pb.h"

namespace cove::client {

// "guestPort=8080,hostPort=18080", "guestIP=0.0.0.0,guestPortRange=3000-3999,hostIP=0.0.0.0",
// "guestPort=22,ignore". Keys (any case): guestIP, guestPort, guestPortRange,
// hostIP, hostPort, hostPortRange, proto (tcp|udp|any), ignore.
absl::StatusOr<cove::v1::PortRule> ParsePortRule(const std::string& text);

// "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]"; IPv6 host ips in brackets.
absl::StatusOr<cove::v1::StaticForward> ParseForwardSpec(const std::string& text);

// "[HOSTIP:]HOSTPORT[/tcp|/udp]", naming a static forward to remove; a full
// forward spec is accepted too.
absl::StatusOr<cove::v1::StaticForward> ParseForwardHostEnd(const std::string& text);

}  // namespace cove::client
