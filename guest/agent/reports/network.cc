#include "guest/agent/reports/network.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <sstream>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

uint32_t PrefixLength(const sockaddr* mask) {
  if (mask == nullptr) return 0;
  const auto* bytes =
      mask->sa_family == AF_INET
          ? reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr)
          : reinterpret_cast<const uint8_t*>(
                &reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
  const int size = mask->sa_family == AF_INET ? 4 : 16;
  uint32_t bits = 0;
  for (int i = 0; i < size; ++i) bits += std::popcount(bytes[i]);
  return bits;
}

// Global scope only: the guest's loopback and link-local addresses say
// nothing about how it is reached.
bool Global(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    const uint32_t a = ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr);
    return (a >> 24) != 127 && (a >> 16) != 0xa9fe;  // 127/8, 169.254/16
  }
  const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
  return !IN6_IS_ADDR_LOOPBACK(&a) && !IN6_IS_ADDR_LINKLOCAL(&a);
}

bool Hex(const std::string& text, uint32_t& out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out, 16);
  return error == std::errc() && end == text.data() + text.size();
}

}  // namespace

DefaultRoute ParseDefaultRoute(std::string_view text) {
  // "Iface Destination Gateway Flags RefCnt Use Metric Mask ...", hex in the
  // kernel's byte order.
  std::istringstream lines{std::string(text)};
  std::string line;
  std::getline(lines, line);  // the header
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string iface, dest, gateway, flags, refcnt, use, metric, mask;
    if (!(fields >> iface >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask)) continue;
    uint32_t f = 0, gw = 0;
    if (!Hex(flags, f) || !Hex(gateway, gw)) continue;
    constexpr uint32_t kUp = 0x1, kGateway = 0x2;
    if (dest != "00000000" || mask != "00000000" || (f & kUp) == 0 || (f & kGateway) == 0) continue;
    in_addr addr{};
    addr.s_addr = gw;  // already in network order: the kernel printed its bytes as an int
    char buf[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &addr, buf, sizeof buf) == nullptr) continue;
    return {buf, iface};
  }
  return {};
}

std::vector<std::string> ParseNameservers(std::string_view text) {
  std::vector<std::string> out;
  std::istringstream lines{std::string(text)};
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string key, value;
    if (fields >> key >> value && key == "nameserver") out.push_back(value);
  }
  return out;
}

NetworkFacts ReadNetwork() {
  NetworkFacts facts;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) == 0) {
    for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      const sockaddr* addr = i->ifa_addr;
      if (addr == nullptr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) continue;
      if ((i->ifa_flags & IFF_LOOPBACK) != 0 || !Global(addr)) continue;
      char buf[INET6_ADDRSTRLEN];
      const void* raw =
          addr->sa_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(addr)->sin_addr)
              : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr);
      if (inet_ntop(addr->sa_family, raw, buf, sizeof buf) == nullptr) continue;
      facts.addresses.push_back({i->ifa_name, buf, PrefixLength(i->ifa_netmask)});
    }
    freeifaddrs(list);
  }
  std::sort(facts.addresses.begin(), facts.addresses.end());
  const DefaultRoute route = ParseDefaultRoute(ReadSmallFile("/proc/net/route"));
  facts.gateway = route.gateway;
  facts.gateway_interface = route.interface;
  facts.nameservers = ParseNameservers(ReadSmallFile("/etc/resolv.conf"));
  return facts;
}

}  // namespace cove::agent
