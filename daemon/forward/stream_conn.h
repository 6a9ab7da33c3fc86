// One host connection relayed over one agent link stream: a client of a
// forwarded socket (later, a forwarded TCP port). Bytes flow both ways with
// backpressure: the client is read only while the stream can take a whole
// read, and stream bytes count as consumed only once the client took them.
//
// Half-close passes through both ways (client EOF -> CLOSE_WRITE, agent
// CLOSE_WRITE -> shutdown of the client's write side). A reset on either
// side closes the other at once.
//
// Threading: loop thread only. Lifetime: owned by its forward, which learns
// through `on_done` that the connection ended and may destroy it then (not
// from inside the callback: post the destruction).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cove/agent/v1/agent.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

// One read buffer per loop thread, shared by every relayed connection
// (StreamConn, LaneConn): a read callback hands the bytes on (or copies
// them) before the next read can start, so a thousand idle connections cost
// no buffers.
inline constexpr size_t kRelayReadSize = 256 * 1024;
char* RelayReadBuffer();

class StreamConn {
 public:
  // Takes an accepted, initialized uv stream (pipe or tcp), allocated with
  // new; StreamConn closes and frees it.
  explicit StreamConn(uv_stream_t* client);
  // Connects to the host unix socket at `path` (a reverse forward's target).
  // Fails at once rather than wait when the socket does not accept.
  static absl::StatusOr<std::unique_ptr<StreamConn>> ConnectUnix(EventLoop& loop,
                                                                 const std::string& path);
  ~StreamConn();
  StreamConn(const StreamConn&) = delete;
  StreamConn& operator=(const StreamConn&) = delete;

  // Called once when the connection ended (cleanly or not).
  void set_on_done(std::function<void()> on_done) { on_done_ = std::move(on_done); }

  // Opens the stream to `target` on `link`. False when the link cannot take
  // a stream now (no session): the caller may retry later.
  bool Attach(AgentLink& link, const cove::agent::v1::StreamOpen& target);
  // Takes over stream `id` that the agent opened (a reverse forward); the
  // returned callbacks go back to the link.
  StreamCallbacks Adopt(AgentLink& link, uint32_t id);
  bool attached() const { return id_ != 0; }
  // Ends the connection now (the forward closes, the wait timed out).
  void Abort(const std::string& why);
  const std::string& end_reason() const { return end_reason_; }

  // Client-side libuv state, defined in the .cc.
  struct Client;

 private:
  StreamCallbacks Callbacks();
  void StartReading();
  void OnClientData(const char* data, size_t n);
  void OnClientEof();
  void OnStreamData(std::string_view data);
  void OnStreamCloseWrite();
  void MaybeFinish();
  void Finish(const std::string& why);

  Client* client_;  // freed in its close callback
  std::function<void()> on_done_;
  AgentLink* link_ = nullptr;
  uint32_t id_ = 0;
  bool reading_ = false;
  bool client_eof_ = false;      // client sent EOF, CLOSE_WRITE queued
  bool stream_eof_ = false;      // agent sent CLOSE_WRITE
  size_t writes_in_flight_ = 0;  // uv_write requests to the client
  bool finished_ = false;
  std::string end_reason_;
};

}  // namespace cove::daemon
