// Which guest listeners become which host forwards: a machine's port rules
// (Lima's meaning, first match wins), its static forwards, and the default
// for listeners no rule matches. Pure functions; see docs/ports.md.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cove/agent/v1/agent.pb.h"
#include "cove/v1/machines.pb.h"

namespace cove::daemon {

// A host end: at most one forward per key in the whole daemon.
struct ForwardKey {
  cove::v1::Proto proto = cove::v1::PROTO_TCP;
  std::string host_ip;  // a literal; never empty
  uint16_t host_port = 0;

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
  auto operator<=>(const ForwardKey&) const = default;
};

// Where a forward's connections go in the guest.
struct ForwardTarget {
  std::string guest_ip;  // as the listener is bound; the agent maps 0.0.0.0 to 127.0.0.1
  uint16_t guest_port = 0;
  bool is_static = false;
  // The guest's network interface reaches the listener (bound to 0.0.0.0,
  // or to :: taking IPv4 too), so a lane can carry its connections.
  bool network_reachable = false;

  bool operator==(const ForwardTarget&) const = default;
};

// "tcp 127.0.0.1:8080", for messages.
std::string Describe(const ForwardKey& key);

// The host end of a static forward (an empty host ip is 127.0.0.1).
ForwardKey StaticForwardKey(const cove::v1::StaticForward& forward);

// What `rules` make of one guest listener: its host end, or nullopt when it
// is ignored (an ignore rule) or not forwarded (no rule, and not bound to a
// default address).
std::optional<ForwardKey> Decide(
    const google::protobuf::RepeatedPtrField<cove::v1::PortRule>& rules, cove::v1::Proto proto,
    const std::string& guest_ip, uint16_t guest_port);

// Every forward a machine should have now: its static forwards, then each
// listener as the rules decide. When two want the same host end, static
// forwards win, then the listener that sorts first (IPv4 before IPv6).
std::map<ForwardKey, ForwardTarget> DesiredForwards(
    const cove::v1::MachineSpec& spec, const std::vector<cove::agent::v1::Listener>& listeners);

// Input checks, with messages that say what to fix.
absl::Status CheckPortRule(const cove::v1::PortRule& rule);
absl::Status CheckStaticForward(const cove::v1::StaticForward& forward);
absl::Status CheckPortSettings(const cove::v1::MachineSpec& spec);

// An IP literal in its canonical text ("::0001" -> "::1"); nullopt if it is
// not one.
std::optional<std::string> CanonicalIp(const std::string& text);

}  // namespace cove::daemon
