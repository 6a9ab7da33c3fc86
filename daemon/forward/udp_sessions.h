// The client sessions of one UDP port forward. Every client address that
// sends to the forward's host socket is one session: one agent link stream
// of length-prefixed datagrams (2-byte big-endian length) to a connected UDP
// socket in the guest, so the guest's replies go back to the client they
// answer. Sessions end after kIdleMs without traffic; at most kMaxSessions
// (the oldest goes first). A datagram that finds the stream full, or that
// comes while the agent link is down, is dropped, as UDP may.
// See docs/ports.md.
//
// Threading: loop thread only. Owned by its PortForward, which owns the host
// sockets (the sessions only send on them, while they are open) and ends
// every session when it closes.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "cove/agent/v1/agent.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class UdpSessions {
 public:
  static constexpr size_t kMaxSessions = 256;
  static constexpr uint64_t kIdleMs = 60000;

  // `target`: what each session opens in the guest; `link` returns the
  // machine's current agent link, or nullptr; `socket_open` says whether a
  // host socket is still open (a reply for a closed one is dropped).
  UdpSessions(EventLoop& loop, cove::agent::v1::StreamOpen target, std::function<AgentLink*()> link,
              std::function<bool(const uv_udp_t* socket)> socket_open);
  ~UdpSessions();
  UdpSessions(const UdpSessions&) = delete;
  UdpSessions& operator=(const UdpSessions&) = delete;

  // A datagram from `from` arrived on host socket `socket`: relays it in
  // the client's session, opening one when it has none.
  void OnDatagram(uv_udp_t* socket, const sockaddr* from, const char* data, size_t n);
  // Ends every session now, resetting its stream with `why`.
  void EndAll(const std::string& why);

  size_t size() const { return sessions_.size(); }

  struct Session;

 private:
  void SendToClient(Session& session);
  void Expire();
  void End(const std::string& peer, const std::string& why);

  const cove::agent::v1::StreamOpen target_;
  std::function<AgentLink*()> link_;
  std::function<bool(const uv_udp_t*)> socket_open_;
  std::map<std::string, std::unique_ptr<Session>> sessions_;  // by peer address bytes
  Timer idle_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
