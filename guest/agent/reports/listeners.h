// Finds the guest's listening sockets for automatic port forwarding: TCP
// sockets in LISTEN and UDP sockets that are bound but not connected, IPv4
// and IPv6, in the agent's network namespace (the guest's root namespace, so
// docker-proxy and host-network containers are seen; containers in their own
// namespace without a published port are not).
//
// The kernel is asked through NETLINK_SOCK_DIAG (inet_diag dumps), never by
// parsing /proc/net. The kernel sends no notification when a socket starts
// listening, so the agent asks: every kFastPollMs while processes are being
// started or ending (the proc connector tells, NETLINK_CONNECTOR), which is
// when listeners come and go, and every kIdlePollMs otherwise, so an idle
// guest costs next to nothing. Without process events (no CAP_NET_ADMIN, no
// CONFIG_PROC_EVENTS) it asks every kFastPollMs. See docs/ports.md.
//
// Threading: the agent's loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "guest/agent/core/unique_fd.h"

namespace cove::agent {

struct ListenerInfo {
  enum class Proto { kTcp, kUdp };
  Proto proto = Proto::kTcp;
  std::string address;  // "0.0.0.0", "::1", ...
  uint16_t port = 0;
  bool v6only = false;  // IPv6 only (IPV6_V6ONLY)

  auto operator<=>(const ListenerInfo&) const = default;
};

class ListenerWatcher {
 public:
  // How often the sockets are listed while processes start and exit, for
  // kFastWindowMs after the last such event; and otherwise.
  static constexpr int kFastPollMs = 100;
  static constexpr int kFastWindowMs = 3000;
  static constexpr int kIdlePollMs = 2000;

  // Subscribes to process events; false (logged) when they are unavailable.
  bool OpenProcessEvents();
  // The fd to poll for process events now, or -1 (while polling fast anyway,
  // events are drained each round instead of waking the loop).
  int PollFd(int64_t now_ms) const;
  // The process-event fd is readable: drain it and poll fast for a while.
  void OnProcessEvents(int64_t now_ms);
  // When processes last started or exited, as far as seen (also while
  // polling fast, when events are drained without waking the loop); 0 if
  // never. Others that follow process events (the mounts' scan) read it.
  int64_t last_process_event_ms() const { return last_event_ms_; }

  // The current listeners, sorted and without duplicates (a socket bound to
  // :: with both families shows once per family it was dumped for).
  const std::vector<ListenerInfo>& listeners() const { return listeners_; }
  // Bumped whenever the set changes.
  uint64_t generation() const { return generation_; }

  // Lists the sockets again if the poll interval passed (or
  // `force`). True when the set changed. A protocol the kernel cannot list
  // (no tcp_diag or udp_diag) is logged once and left out from then on.
  bool Refresh(int64_t now_ms, bool force);
  int64_t next_due_ms() const { return next_due_ms_; }

  // One dump, for tests: every listener of `proto` in `family`, appended.
  // False with `error` set when the kernel refused.
  bool Dump(int family, ListenerInfo::Proto proto, std::vector<ListenerInfo>& out,
            std::string& error);

 private:
  // True when there was something to drain.
  bool DrainProcessEvents();
  bool Fast(int64_t now_ms) const { return !events_.valid() || now_ms < fast_until_ms_; }

  UniqueFd sock_;
  UniqueFd events_;  // NETLINK_CONNECTOR, proc events
  int64_t fast_until_ms_ = 0;
  int64_t last_event_ms_ = 0;
  std::vector<ListenerInfo> listeners_;
  uint64_t generation_ = 0;
  int64_t next_due_ms_ = 0;
  bool tcp_failed_ = false;
  bool udp_failed_ = false;
};

}  // namespace cove::agent
