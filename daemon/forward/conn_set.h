// The open host connections of one forward (a socket forward or a TCP port
// forward), each relayed over its own agent link stream to `target`, or, for
// a TCP port forward with a lane up, through the lane (LaneConn).
//
// While the agent link is down (agent restarting, coved re-adopting) new
// connections wait for it, at most kWaitForAgentMs, then are closed; open
// connections die with the link session they ran on.
//
// Threading: loop thread only. Owned by its forward.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "cove/agent/v1/agent.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/forward/lane_conn.h"
#include "daemon/forward/stream_conn.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class ConnSet {
 public:
  static constexpr uint64_t kWaitForAgentMs = 10000;
  // Connections open through the lane at once; more go over the agent link.
  // QEMU's user-mode network loses connections that arrive together (8
  // simultaneous connects to a hostfwd lost 2-3 here; 6 never did), while
  // the agent link serves a thousand (docs/ports.md, "Routes").
  static constexpr size_t kMaxLaneConnections = 4;

  // `what` names the forward in logs; `link` returns the machine's current
  // agent link, or nullptr; `on_count` runs when a connection ends; `lane`
  // returns the host port of the target's lane, or 0 while there is none.
  ConnSet(EventLoop& loop, std::string what, cove::agent::v1::StreamOpen target,
          std::function<AgentLink*()> link, size_t max_connections,
          std::function<void()> on_count = nullptr, std::function<uint16_t()> lane = nullptr);
  ~ConnSet();
  ConnSet(const ConnSet&) = delete;
  ConnSet& operator=(const ConnSet&) = delete;

  // Accepts the next connection of `server` and relays it (or lets it wait
  // for the agent, or closes it when max_connections are open).
  void Accept(uv_stream_t* server, size_t handle_size,
              const std::function<void(uv_stream_t*)>& init);
  // The agent link is (back) up: attach waiting connections.
  void OnLinkReady();
  // Ends every connection now.
  void AbortAll(const std::string& why);

  size_t size() const { return conns_.size() + lane_conns_.size(); }

 private:
  struct Pending {
    StreamConn* conn;
    uint64_t deadline_ms;
  };
  // Relays an accepted client over the agent link (or lets it wait).
  void Relay(uv_stream_t* client);
  void Remove(StreamConn* conn);
  void Remove(LaneConn* conn);
  void ExpireWaiting();

  EventLoop& loop_;
  const std::string what_;
  const cove::agent::v1::StreamOpen target_;
  std::function<AgentLink*()> link_;
  const size_t max_connections_;
  std::function<void()> on_count_;
  std::function<uint16_t()> lane_;
  std::list<std::unique_ptr<StreamConn>> conns_;
  std::list<std::unique_ptr<LaneConn>> lane_conns_;
  std::list<Pending> waiting_;
  Timer wait_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
