// The host end of the link to one machine's cove-agent. Connects to the
// agent socket that qemu serves (the virtio-serial chardev), says HostHello
// until the agent answers with Hello, then tracks heartbeats. Reconnects by
// itself when the connection drops, for as long as it is alive.
//
// Threading: loop thread only; callbacks run on it. Owned by the machine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/link_frame.h"
#include "cove/agent/v1/agent.pb.h"
#include "daemon/loop/event_loop.h"
#include "daemon/loop/unix_stream.h"

namespace cove::daemon {

class AgentLink {
 public:
  struct Callbacks {
    // The agent said hello on a fresh session (first time or after a
    // reconnect).
    std::function<void(const cove::agent::v1::Hello&)> on_hello;
    std::function<void(const cove::agent::v1::Heartbeat&)> on_heartbeat;
    // A session that had said hello is gone.
    std::function<void(const std::string& why)> on_lost;
    std::function<void()> on_shutdown_ack;
  };

  // Silence after which a connected agent counts as lost (three missed
  // heartbeats at the agent's default 5 s).
  static constexpr uint64_t kHeartbeatTimeoutMs = 16000;

  AgentLink(EventLoop& loop, std::string name, std::string socket_path, Callbacks callbacks);
  ~AgentLink();

  // Starts connecting; retries until Stop() or destruction.
  void Start();
  void Stop();
  bool ready() const { return ready_; }
  // Asks the guest to power off. False if no agent session is up.
  bool RequestShutdown();

 private:
  void Connect();
  void OnConnected();
  void OnData(std::string_view bytes);
  void OnControl(const std::string& payload);
  void Drop(const std::string& why);
  void SendHostHello();
  bool SendControl(const cove::agent::v1::HostToGuest& msg);

  EventLoop& loop_;
  const std::string name_;
  const std::string socket_path_;
  Callbacks callbacks_;
  UnixStream stream_;
  link::FrameDecoder decoder_;
  Timer retry_;     // reconnect backoff, and HostHello resends
  Timer watchdog_;  // heartbeat timeout
  bool running_ = false;
  bool ready_ = false;
  uint64_t session_id_ = 0;
  uint64_t backoff_ms_ = 50;
};

}  // namespace cove::daemon
