#include "client/port_flags.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace cove::client {
namespace {

absl::StatusOr<uint32_t> Port(const std::string& text, const std::string& what) {
  uint32_t port = 0;
  if (!absl::SimpleAtoi(text, &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", text, "' is not a port (1-65535)"));
  }
  return port;
}

absl::StatusOr<std::pair<uint32_t, uint32_t>> Range(const std::string& text,
                                                    const std::string& what) {
  std::vector<std::string> parts = absl::StrSplit(text, '-');
  if (parts.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", text, "' is not FIRST-LAST"));
  }
  auto first = Port(parts[0], what);
  if (!first.ok()) return first.status();
  auto last = Port(parts[1], what);
  if (!last.ok()) return last.status();
  if (*last < *first) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", text, "' ends before it starts"));
  }
  return std::make_pair(*first, *last);
}

absl::StatusOr<cove::v1::Proto> ProtoOf(const std::string& text, bool allow_any) {
  const std::string p = absl::AsciiStrToLower(text);
  if (p == "tcp") return cove::v1::PROTO_TCP;
  if (p == "udp") return cove::v1::PROTO_UDP;
  if (allow_any && p == "any") return cove::v1::PROTO_UNSPECIFIED;
  return absl::InvalidArgumentError(
      absl::StrCat("proto '", text, "' is not ", allow_any ? "tcp, udp or any" : "tcp or udp"));
}

// Splits "HOST:PORT..." where HOST may be "[v6]"; `rest` gets what follows
// the host's colon. No host: `host` stays empty and `rest` is the whole text.
void SplitHost(const std::string& text, std::string& host, std::string& rest, size_t colons) {
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close != std::string::npos && close + 1 < text.size() && text[close + 1] == ':') {
      host = text.substr(1, close - 1);
      rest = text.substr(close + 2);
      return;
    }
  }
  if (static_cast<size_t>(std::count(text.begin(), text.end(), ':')) == colons) {
    const size_t colon = text.find(':');
    host = text.substr(0, colon);
    rest = text.substr(colon + 1);
    return;
  }
  host.clear();
  rest = text;
}

}  // namespace

absl::StatusOr<cove::v1::PortRule> ParsePortRule(const std::string& text) {
  const std::string usage = absl::StrCat(
      "--port-rule \"", text,
      "\": expected comma-separated KEY=VALUE (guestIP, guestPort, guestPortRange, hostIP, "
      "hostPort, hostPortRange, proto) and ignore, e.g. guestPort=8080,hostPort=18080");
  cove::v1::PortRule rule;
  std::pair<uint32_t, uint32_t> host_range{0, 0};
  bool any = false;
  for (const std::string& item :
       std::vector<std::string>(absl::StrSplit(text, ',', absl::SkipEmpty()))) {
    any = true;
    const size_t eq = item.find('=');
    const std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(item.substr(0, eq)));
    const std::string value =
        eq == std::string::npos ? "" : std::string(absl::StripAsciiWhitespace(item.substr(eq + 1)));
    if (key == "ignore") {
      rule.set_ignore(value.empty() || absl::AsciiStrToLower(value) == "true");
      continue;
    }
    if (eq == std::string::npos || value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(usage, " ('", item, "' has no value)"));
    }
    if (key == "guestip") {
      rule.set_guest_ip(value);
    } else if (key == "hostip") {
      rule.set_host_ip(value);
    } else if (key == "guestport") {
      auto p = Port(value, "guestPort");
      if (!p.ok()) return p.status();
      rule.set_guest_port_start(*p);
      rule.set_guest_port_end(*p);
    } else if (key == "guestportrange") {
      auto r = Range(value, "guestPortRange");
      if (!r.ok()) return r.status();
      rule.set_guest_port_start(r->first);
      rule.set_guest_port_end(r->second);
    } else if (key == "hostport") {
      auto p = Port(value, "hostPort");
      if (!p.ok()) return p.status();
      host_range = {*p, *p};
    } else if (key == "hostportrange") {
      auto r = Range(value, "hostPortRange");
      if (!r.ok()) return r.status();
      host_range = *r;
    } else if (key == "proto") {
      auto p = ProtoOf(value, true);
      if (!p.ok()) return p.status();
      rule.set_proto(*p);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(usage, " (unknown key '", key, "')"));
    }
  }
  if (!any) return absl::InvalidArgumentError(usage);
  if (host_range.first != 0) {
    if (rule.guest_port_start() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--port-rule \"", text, "\": hostPort needs guestPort or guestPortRange"));
    }
    const uint32_t guest_len = rule.guest_port_end() - rule.guest_port_start();
    if (host_range.second - host_range.first != guest_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--port-rule \"", text, "\": hostPortRange must be as long as guestPortRange (",
          guest_len + 1, " ports)"));
    }
    rule.set_host_port_start(host_range.first);
  }
  return rule;
}

absl::StatusOr<cove::v1::StaticForward> ParseForwardSpec(const std::string& text) {
  const std::string usage =
      absl::StrCat("forward \"", text, "\": expected [HOSTIP:]HOSTPORT:GUESTPORT[/udp], e.g. ",
                   "8080:80 or 0.0.0.0:5353:53/udp");
  cove::v1::StaticForward f;
  std::string body = text;
  f.set_proto(cove::v1::PROTO_TCP);
  if (const size_t slash = body.rfind('/'); slash != std::string::npos) {
    auto p = ProtoOf(body.substr(slash + 1), false);
    if (!p.ok())
      return absl::InvalidArgumentError(absl::StrCat(usage, " (", p.status().message(), ")"));
    f.set_proto(*p);
    body = body.substr(0, slash);
  }
  std::string host, rest;
  SplitHost(body, host, rest, 2);
  std::vector<std::string> ports = absl::StrSplit(rest, ':');
  if (ports.size() != 2) return absl::InvalidArgumentError(usage);
  auto hp = Port(ports[0], "host port");
  if (!hp.ok()) return hp.status();
  auto gp = Port(ports[1], "guest port");
  if (!gp.ok()) return gp.status();
  f.set_host_ip(host);
  f.set_host_port(*hp);
  f.set_guest_port(*gp);
  return f;
}

absl::StatusOr<cove::v1::StaticForward> ParseForwardHostEnd(const std::string& text) {
  if (auto full = ParseForwardSpec(text); full.ok()) return full;
  cove::v1::StaticForward f;
  std::string body = text;
  f.set_proto(cove::v1::PROTO_TCP);
  if (const size_t slash = body.rfind('/'); slash != std::string::npos) {
    auto p = ProtoOf(body.substr(slash + 1), false);
    if (!p.ok()) return p.status();
    f.set_proto(*p);
    body = body.substr(0, slash);
  }
  std::string host, rest;
  SplitHost(body, host, rest, 1);
  auto hp = Port(rest, "host port");
  if (!hp.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "forward \"", text, "\": expected [HOSTIP:]HOSTPORT[/udp], as `cove ports` lists it"));
  }
  f.set_host_ip(host);
  f.set_host_port(*hp);
  return f;
}

}  // namespace cove::client
