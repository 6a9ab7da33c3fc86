// A host unix socket whose every connection becomes one stream to a target
// in the guest (the runtime's socket: containerd.sock, docker.sock).
//
// The socket file exists exactly while the forward is open (the machine
// runs). While the agent link is down (agent restarting, coved re-adopting)
// new connections wait for it, at most kWaitForAgentMs, then are closed;
// open connections die with the link session they ran on.
//
// Threading: loop thread only. Owned by the machine.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "cove/agent/v1/agent.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/forward/stream_conn.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class SocketForward {
 public:
  static constexpr uint64_t kWaitForAgentMs = 10000;
  // Connections beyond this are closed at once.
  static constexpr size_t kMaxConnections = 512;

  // `link` returns the machine's current agent link, or nullptr.
  SocketForward(EventLoop& loop, std::string name, std::string host_path,
                cove::agent::v1::StreamOpen target, std::function<AgentLink*()> link);
  ~SocketForward();
  SocketForward(const SocketForward&) = delete;
  SocketForward& operator=(const SocketForward&) = delete;

  // Binds the socket (replacing a stale file), mode 0600, and listens.
  absl::Status Open();
  // The agent link is (back) up: attach waiting connections.
  void OnLinkReady();

  const std::string& host_path() const { return host_path_; }
  size_t connection_count() const { return conns_.size(); }

  struct Listener;

 private:
  struct Pending {
    StreamConn* conn;
    uint64_t deadline_ms;
  };
  void OnConnection();
  void Remove(StreamConn* conn);
  void ExpireWaiting();

  EventLoop& loop_;
  const std::string name_;
  const std::string host_path_;
  const cove::agent::v1::StreamOpen target_;
  std::function<AgentLink*()> link_;
  Listener* listener_ = nullptr;  // freed in its close callback
  std::list<std::unique_ptr<StreamConn>> conns_;
  std::list<Pending> waiting_;
  Timer wait_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
