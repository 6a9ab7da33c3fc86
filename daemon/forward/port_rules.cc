#include "daemon/forward/port_rules.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/api_names.h"
#include "common/errors.h"

namespace cove::daemon {
namespace {

constexpr const char* kDefaultHostIp = "127.0.0.1";

bool IsWildcard(const std::string& ip) { return ip == "0.0.0.0" || ip == "::"; }
bool IsLoopback(const std::string& ip) { return ip == "127.0.0.1" || ip == "::1"; }

bool ProtoMatches(cove::v1::Proto rule, cove::v1::Proto listener) {
  return rule == cove::v1::PROTO_UNSPECIFIED || rule == listener;
}

bool IpMatches(const std::string& rule_ip, const std::string& listener_ip) {
  if (rule_ip.empty()) return IsWildcard(listener_ip) || IsLoopback(listener_ip);
  if (IsWildcard(rule_ip)) return true;  // Lima: 0.0.0.0 means every guest address
  return CanonicalIp(rule_ip) == listener_ip;
}

std::pair<uint32_t, uint32_t> GuestRange(const cove::v1::PortRule& rule) {
  if (rule.guest_port_start() == 0) return {1, 65535};
  return {rule.guest_port_start(), std::max(rule.guest_port_start(), rule.guest_port_end())};
}

}  // namespace

std::string Describe(const ForwardKey& key) {
  return absl::StrCat(ProtoName(key.proto), " ", Endpoint(key.host_ip, key.host_port));
}

ForwardKey StaticForwardKey(const cove::v1::StaticForward& forward) {
  const std::string ip = forward.host_ip().empty() ? kDefaultHostIp : forward.host_ip();
  return ForwardKey{forward.proto(), CanonicalIp(ip).value_or(ip),
                    static_cast<uint16_t>(forward.host_port())};
}

std::optional<std::string> CanonicalIp(const std::string& text) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    return std::string(inet_ntop(AF_INET, buf, out, sizeof(out)));
  }
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) {
    return std::string(inet_ntop(AF_INET6, buf, out, sizeof(out)));
  }
  return std::nullopt;
}

std::optional<ForwardKey> Decide(
    const google::protobuf::RepeatedPtrField<cove::v1::PortRule>& rules, cove::v1::Proto proto,
    const std::string& guest_ip, uint16_t guest_port) {
  for (const cove::v1::PortRule& rule : rules) {
    const auto [first, last] = GuestRange(rule);
    if (!ProtoMatches(rule.proto(), proto) || !IpMatches(rule.guest_ip(), guest_ip) ||
        guest_port < first || guest_port > last) {
      continue;
    }
    if (rule.ignore()) return std::nullopt;
    ForwardKey key;
    key.proto = proto;
    key.host_ip = rule.host_ip().empty() ? kDefaultHostIp : *CanonicalIp(rule.host_ip());
    const uint32_t host_port =
        rule.host_port_start() == 0 ? guest_port : rule.host_port_start() + (guest_port - first);
    if (host_port == 0 || host_port > 65535) return std::nullopt;  // CheckPortRule prevents it
    key.host_port = static_cast<uint16_t>(host_port);
    return key;
  }
  if (!IsWildcard(guest_ip) && !IsLoopback(guest_ip)) return std::nullopt;
  return ForwardKey{proto, kDefaultHostIp, guest_port};
}

std::map<ForwardKey, ForwardTarget> DesiredForwards(
    const cove::v1::MachineSpec& spec, const std::vector<cove::agent::v1::Listener>& listeners) {
  std::map<ForwardKey, ForwardTarget> out;
  for (const cove::v1::StaticForward& s : spec.static_forwards()) {
    out.emplace(StaticForwardKey(s),
                ForwardTarget{"127.0.0.1", static_cast<uint16_t>(s.guest_port()), true});
  }
  std::vector<cove::agent::v1::Listener> sorted = listeners;
  // IPv4 first: "0.0.0.0" and "127.0.0.1" sort before "::" and "::1".
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return std::make_tuple(a.port(), a.proto(), a.address()) <
           std::make_tuple(b.port(), b.proto(), b.address());
  });
  for (const auto& l : sorted) {
    if (l.port() == 0 || l.port() > 65535) continue;
    const auto proto =
        l.proto() == cove::agent::v1::PROTO_UDP ? cove::v1::PROTO_UDP : cove::v1::PROTO_TCP;
    auto key = Decide(spec.port_rules(), proto, l.address(), static_cast<uint16_t>(l.port()));
    if (!key) continue;
    const bool reachable = l.proto() == cove::agent::v1::PROTO_TCP &&
                           (l.address() == "0.0.0.0" || (l.address() == "::" && !l.v6only()));
    out.emplace(*key,
                ForwardTarget{l.address(), static_cast<uint16_t>(l.port()), false, reachable});
  }
  return out;
}

absl::Status CheckPortRule(const cove::v1::PortRule& rule) {
  auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("port rule: ", why));
  };
  if (!rule.guest_ip().empty() && !CanonicalIp(rule.guest_ip())) {
    return bad(absl::StrCat("guestIP '", rule.guest_ip(), "' is not an IP address"));
  }
  if (!rule.host_ip().empty() && !CanonicalIp(rule.host_ip())) {
    return bad(absl::StrCat("hostIP '", rule.host_ip(), "' is not an IP address"));
  }
  if (rule.guest_port_start() > 65535 || rule.guest_port_end() > 65535 ||
      rule.host_port_start() > 65535) {
    return bad("ports are 1-65535");
  }
  if (rule.guest_port_start() == 0 && rule.guest_port_end() != 0) {
    return bad("a guest port range needs its first port");
  }
  if (rule.guest_port_end() != 0 && rule.guest_port_end() < rule.guest_port_start()) {
    return bad(absl::StrCat("guest port range ", rule.guest_port_start(), "-",
                            rule.guest_port_end(), " ends before it starts"));
  }
  if (rule.host_port_start() != 0) {
    if (rule.guest_port_start() == 0) {
      return bad("hostPort needs guestPort or guestPortRange (which guest port goes there?)");
    }
    const auto [first, last] = GuestRange(rule);
    if (rule.host_port_start() + (last - first) > 65535) {
      return bad(absl::StrCat("host ports from ", rule.host_port_start(), " for ", last - first + 1,
                              " guest ports pass 65535"));
    }
  }
  if (rule.proto() != cove::v1::PROTO_UNSPECIFIED && rule.proto() != cove::v1::PROTO_TCP &&
      rule.proto() != cove::v1::PROTO_UDP) {
    return bad("proto is tcp, udp or any");
  }
  return absl::OkStatus();
}

absl::Status CheckStaticForward(const cove::v1::StaticForward& f) {
  const std::string what = absl::StrCat("forward ", f.host_ip().empty() ? "" : f.host_ip() + ":",
                                        f.host_port(), ":", f.guest_port());
  if (f.proto() != cove::v1::PROTO_TCP && f.proto() != cove::v1::PROTO_UDP) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": proto is tcp or udp"));
  }
  if (!f.host_ip().empty() && !CanonicalIp(f.host_ip())) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", f.host_ip(), "' is not an IP address"));
  }
  if (f.host_port() == 0 || f.host_port() > 65535 || f.guest_port() == 0 ||
      f.guest_port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ports are 1-65535"));
  }
  return absl::OkStatus();
}

absl::Status CheckPortSettings(const cove::v1::MachineSpec& spec) {
  for (const auto& rule : spec.port_rules()) {
    if (auto st = CheckPortRule(rule); !st.ok()) return st;
  }
  std::set<ForwardKey> seen;
  for (const auto& f : spec.static_forwards()) {
    if (auto st = CheckStaticForward(f); !st.ok()) return st;
    const ForwardKey key = StaticForwardKey(f);
    if (!seen.insert(key).second) {
      return WithReason(absl::AlreadyExistsError(
                            absl::StrCat("a static forward for ", Describe(key),
                                         " exists already; remove it first (`cove forward rm`)")),
                        cove::v1::PORT_IN_USE, {{"hostPort", std::to_string(key.host_port)}});
    }
  }
  return absl::OkStatus();
}

}  // namespace cove::daemon
