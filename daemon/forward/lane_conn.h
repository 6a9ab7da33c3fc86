// One host connection of a TCP port forward relayed through a lane: a TCP
// port on the host's 127.0.0.1 through which the hypervisor's user-mode
// network reaches the guest port (docs/ports.md, "Routes"). Bytes are copied
// between the two host sockets with backpressure; half-close passes through
// both ways; an error on either side closes both.
//
// If the lane does not accept the connection, the client goes back, untouched
// (nothing read from it), to `fallback`, which relays it over the agent link.
//
// Threading: loop thread only. Lifetime: owned by its ConnSet, which learns
// through `on_done` that the connection ended (destroy it on a later turn).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class LaneConn {
 public:
  // Takes the accepted, initialized TCP client (allocated with malloc).
  LaneConn(EventLoop& loop, uv_stream_t* client, uint16_t lane_port,
           std::function<void(uv_stream_t* client)> fallback);
  ~LaneConn();
  LaneConn(const LaneConn&) = delete;
  LaneConn& operator=(const LaneConn&) = delete;

  // Called once when the connection ended or went to `fallback`.
  void set_on_done(std::function<void()> on_done) { on_done_ = std::move(on_done); }
  void Abort(const std::string& why) { Finish(why); }

  // One socket's libuv state, defined in the .cc.
  struct End;

 private:
  void OnConnected(int status);
  void StartReading(End* end);
  void OnRead(End* from, ssize_t n, const char* data);
  void OnWritten(End* to, size_t n, int status);
  void ShutIfDrained(End* to);
  void MaybeDone();
  void Finish(const std::string& why);

  End* client_;  // both freed in their close callbacks
  End* lane_;
  std::function<void(uv_stream_t*)> fallback_;
  std::function<void()> on_done_;
  bool connected_ = false;
  bool finished_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
