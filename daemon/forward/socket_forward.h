// A host unix socket whose every connection becomes one stream to a target
// in the guest (the runtime's socket: containerd.sock, docker.sock).
//
// The socket file exists exactly while the forward is open (the machine
// runs). Connections while the agent link is down: see ConnSet.
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
#include "daemon/forward/conn_set.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class SocketForward {
 public:
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
  void OnLinkReady() { conns_.OnLinkReady(); }

  const std::string& host_path() const { return host_path_; }
  size_t connection_count() const { return conns_.size(); }

  struct Listener;

 private:
  void OnConnection();

  EventLoop& loop_;
  const std::string host_path_;
  Listener* listener_ = nullptr;  // freed in its close callback
  ConnSet conns_;
};

}  // namespace cove::daemon
