// The host end of the link to one machine's cove-agent. Connects to the
// agent socket that qemu serves (the virtio-serial chardev), says HostHello
// until the agent answers with Hello, then tracks heartbeats. Reconnects by
// itself when the connection drops, for as long as it is alive.
//
// Byte streams (exec, forwarded connections) share the link through a
// StreamMux; they live as long as one session: a dropped link resets every
// stream (on_reset), and new streams work again once the agent says Hello.
//
// Threading: loop thread only; callbacks run on it. Owned by the machine.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/link_frame.h"
#include "common/stream_mux.h"
#include "cove/agent/v1/agent.pb.h"
#include "daemon/loop/event_loop.h"
#include "daemon/loop/unix_stream.h"

namespace cove::daemon {

// What the owner of a stream hears. Every callback may call back into the
// AgentLink (write, reset, even reset this very stream).
struct StreamCallbacks {
  // Bytes arrived; call AgentLink::ConsumeStream() once they are delivered
  // (that is what lets the agent send more).
  std::function<void(std::string_view data)> on_data;
  // The agent will send no more on the stream.
  std::function<void()> on_close_write;
  // The stream is gone (the agent reset it, or the link dropped). Not called
  // for a reset made with ResetStream().
  std::function<void(const std::string& reason)> on_reset;
  // WriteStream() may take more again after a refusal.
  std::function<void()> on_writable;
};

class AgentLink {
 public:
  // What the link itself tells its owner. Everything the guest reports goes
  // to the handler registered for its kind instead (Handle, HandleOpen).
  struct Callbacks {
    // The agent said hello on a fresh session (first time or after a
    // reconnect).
    std::function<void(const cove::agent::v1::Hello&)> on_hello;
    // A session that had said hello is gone.
    std::function<void(const std::string& why)> on_lost;
  };
  using MessageHandler = std::function<void(const cove::agent::v1::GuestToHost&)>;
  // Accepts a stream the agent opened (an exec's stderr, a reverse forward
  // connection) with its callbacks, or refuses it with nullopt.
  using OpenHandler = std::function<std::optional<StreamCallbacks>(
      uint32_t id, const cove::agent::v1::StreamOpen&)>;

  // Silence after which a connected agent counts as lost (three missed
  // heartbeats at the agent's default 5 s).
  static constexpr uint64_t kHeartbeatTimeoutMs = 16000;
  // Encoded output handed to the socket ahead of what it has written.
  static constexpr size_t kMaxInFlight = 1024 * 1024;

  AgentLink(EventLoop& loop, std::string name, std::string socket_path, Callbacks callbacks);
  ~AgentLink();

  // What every HostHello asks for: the services the agent must run, the
  // reverse sockets it must serve, the host directories it must mount.
  struct GuestWants {
    std::vector<std::string> services;
    std::vector<cove::agent::v1::ReverseSocket> reverse_sockets;
    std::vector<cove::agent::v1::GuestMount> mounts;
    bool foreign_binaries = false;
  };
  // Takes effect at the next hello; call before Start().
  void Configure(GuestWants wants) { wants_ = std::move(wants); }
  // Routes every message of kind `which` from a greeted session to
  // `handler`, the one owner of that kind (a second registration replaces
  // the first). Messages of a kind nobody handles are dropped. Hello and
  // Refreshed belong to the link itself.
  void Handle(cove::agent::v1::GuestToHost::MsgCase which, MessageHandler handler);
  // The same for streams the agent opens, by what they are for.
  void HandleOpen(cove::agent::v1::StreamOpen::TargetCase which, OpenHandler handler);

  // Starts connecting; retries until Stop() or destruction.
  void Start();
  void Stop();
  bool ready() const { return ready_; }
  // Asks the guest to power off. False if no agent session is up.
  bool RequestShutdown();
  // A control message (exec resize, signal). False if no session is up.
  bool SendControl(const cove::agent::v1::HostToGuest& msg);
  // Asks the agent for fresh reports (heartbeat, listeners, emulation) and
  // runs `done` once they have been delivered to the callbacks above, or
  // after `bound_ms`, or when the session ends: exactly once, on the loop,
  // never inside this call. At once (posted) when no session is up.
  void Refresh(uint64_t bound_ms, std::function<void()> done);

  // Streams. OpenStream returns 0 when no session is up or the stream limit
  // is reached.
  uint32_t OpenStream(const cove::agent::v1::StreamOpen& what, StreamCallbacks callbacks);
  // False when the stream is gone or its buffer is full (wait for
  // on_writable); nothing is taken then.
  bool WriteStream(uint32_t id, std::string_view data);
  size_t StreamWritable(uint32_t id) const;
  void CloseStreamWrite(uint32_t id);
  void ResetStream(uint32_t id, const std::string& reason);
  // Stops calling the stream's callbacks but lets queued data and the
  // CLOSE_WRITE go out (a stream that ended cleanly both ways).
  void ForgetStream(uint32_t id) { handlers_.erase(id); }
  void ConsumeStream(uint32_t id, size_t n);
  size_t stream_count() const { return handlers_.size(); }

 private:
  void Connect();
  void OnConnected();
  void OnData(std::string_view bytes);
  void OnControl(const std::string& payload);
  // Ends the session (streams reset, on_lost) but keeps the connection.
  void EndSession(const std::string& why);
  // Ends the session and the connection, and reconnects after a backoff.
  void Drop(const std::string& why);
  void SendHostHello();
  void SchedulePump();
  void Pump();
  std::shared_ptr<StreamCallbacks> Handler(uint32_t id) const;
  // Runs and forgets the pending refresh `id` (all of them with 0).
  void FinishRefresh(uint64_t id);
  link::StreamMux::Callbacks MuxCallbacks();

  EventLoop& loop_;
  const std::string name_;
  const std::string socket_path_;
  Callbacks callbacks_;
  std::map<int, MessageHandler> message_handlers_;  // by GuestToHost::MsgCase
  std::map<int, OpenHandler> open_handlers_;        // by StreamOpen::TargetCase
  GuestWants wants_;
  UnixStream stream_;
  link::FrameDecoder decoder_;
  std::unique_ptr<link::StreamMux> mux_;
  std::map<uint32_t, std::shared_ptr<StreamCallbacks>> handlers_;
  struct PendingRefresh {
    std::function<void()> done;
    std::unique_ptr<Timer> bound;
  };
  std::map<uint64_t, PendingRefresh> refreshes_;
  uint64_t next_refresh_id_ = 1;
  Timer retry_;     // reconnect backoff, and HostHello resends
  Timer watchdog_;  // heartbeat timeout
  Timer pump_;      // moves mux output to the socket, batched per loop turn
  bool pump_scheduled_ = false;
  bool running_ = false;
  bool ready_ = false;
  uint64_t session_id_ = 0;
  uint64_t backoff_ms_ = 50;
};

}  // namespace cove::daemon
