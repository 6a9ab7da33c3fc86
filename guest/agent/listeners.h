// Finds the guest's listening sockets for automatic port forwarding: TCP
// sockets in LISTEN and UDP sockets that are bound but not connected, IPv4
// and IPv6, in the agent's network namespace (the guest's root namespace, so
// docker-proxy and host-network containers are seen; containers in their own
// namespace without a published port are not).
//
// The kernel is asked through NETLINK_SOCK_DIAG (inet_diag dumps), never by
// parsing /proc/net. The kernel sends no notification when a socket starts
// listening, so the agent asks again every kPollMs; a dump of 50 listeners
// costs a few syscalls. See docs/ports.md.
//
// Threading: the agent's loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "guest/agent/unique_fd.h"

namespace cove::agent {

struct ListenerInfo {
  enum class Proto { kTcp, kUdp };
  Proto proto = Proto::kTcp;
  std::string address;  // "0.0.0.0", "::1", ...
  uint16_t port = 0;

  auto operator<=>(const ListenerInfo&) const = default;
};

class ListenerWatcher {
 public:
  // How often the sockets are listed: a new listener is seen within this.
  static constexpr int kPollMs = 100;

  // The current listeners, sorted and without duplicates (a socket bound to
  // :: with both families shows once per family it was dumped for).
  const std::vector<ListenerInfo>& listeners() const { return listeners_; }
  // Bumped whenever the set changes.
  uint64_t generation() const { return generation_; }

  // Lists the sockets again if kPollMs passed since the last time (or
  // `force`). True when the set changed. A protocol the kernel cannot list
  // (no tcp_diag or udp_diag) is logged once and left out from then on.
  bool Refresh(int64_t now_ms, bool force);
  int64_t next_due_ms() const { return next_due_ms_; }

  // One dump, for tests: every listener of `proto` in `family`, appended.
  // False with `error` set when the kernel refused.
  bool Dump(int family, ListenerInfo::Proto proto, std::vector<ListenerInfo>& out,
            std::string& error);

 private:
  UniqueFd sock_;
  std::vector<ListenerInfo> listeners_;
  uint64_t generation_ = 0;
  int64_t next_due_ms_ = 0;
  bool tcp_failed_ = false;
  bool udp_failed_ = false;
};

}  // namespace cove::agent
