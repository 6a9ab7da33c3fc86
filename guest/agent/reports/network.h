// The guest's network as the agent reports it (GuestNetwork): its global
// addresses, the IPv4 route out and the resolver's nameservers. The Parse*
// functions are pure so they can be tested on fixed text; ReadNetwork reads
// the live system.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cove::agent {

struct NetAddress {
  std::string interface;
  std::string address;
  uint32_t prefix_length = 0;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
  auto operator<=>(const NetAddress&) const = default;
};

struct NetworkFacts {
  std::vector<NetAddress> addresses;  // sorted
  std::string gateway;                // "" without an IPv4 default route
  std::string gateway_interface;
  std::vector<std::string> nameservers;
  bool operator==(const NetworkFacts&) const = default;
};

struct DefaultRoute {
  std::string gateway;
  std::string interface;
};
// Text in /proc/net/route format: the first up default route (destination
// and mask 0) with a gateway.
DefaultRoute ParseDefaultRoute(std::string_view text);
// Text in /etc/resolv.conf format: the nameserver lines' addresses.
std::vector<std::string> ParseNameservers(std::string_view text);

// Reads the addresses (getifaddrs), /proc/net/route and /etc/resolv.conf.
NetworkFacts ReadNetwork();

}  // namespace cove::agent
