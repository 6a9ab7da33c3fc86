// One forward of a host end (proto, host ip, host port) to a guest port,
// with an explicit state machine. See docs/ports.md.
//
//   pending --bind ok--> listening --listener gone--> closing --drained--> closed
//      |  ^                                               ^
//      |  +-- retry (backoff) -- conflict (port taken) ---+ (listener gone)
//      +--> failed (permission, no such address: retrying will not help)
//
// TCP: every host connection is one agent link stream (ConnSet, StreamConn),
// or, for a listener on the guest's 0.0.0.0 or ::, a connection through the
// machine's lane to that port while it has one (LaneTable, LaneConn).
// UDP: every client address is one session, one stream of length-prefixed
// datagrams, ended after kUdpIdleMs without traffic (UdpSessions).
//
// Threading: loop thread only. Owned by the machine's PortForwarder, which
// decides which forwards exist and destroys each once it is closed.
//
// This header is also the one the rest of the daemon includes for port
// forwarding: it exports PortForwarder, PortRegistry and LaneTable.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cove/agent/v1/agent.pb.h"
#include "cove/v1/machines.pb.h"
#include "daemon/forward/conn_set.h"
#include "daemon/forward/lane_table.h"        // IWYU pragma: export
#include "daemon/forward/port_forward_env.h"  // IWYU pragma: export
#include "daemon/forward/port_forwarder.h"    // IWYU pragma: export
#include "daemon/forward/port_registry.h"     // IWYU pragma: export
#include "daemon/forward/port_rules.h"        // IWYU pragma: export
#include "daemon/forward/udp_sessions.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class PortForward {
 public:
  static constexpr size_t kMaxConnections = 4096;
  static constexpr size_t kMaxUdpSessions = UdpSessions::kMaxSessions;
  static constexpr uint64_t kUdpIdleMs = UdpSessions::kIdleMs;
  // Conflict retries: from the first delay, doubling, up to the cap.
  static constexpr uint64_t kFirstRetryMs = 250;
  static constexpr uint64_t kMaxRetryMs = 2000;

  using Env = PortForwardEnv;

  // `on_change` runs after every state change (not from the constructor).
  PortForward(Env env, ForwardKey key, ForwardTarget target,
              std::function<void(const PortForward&)> on_change);
  ~PortForward();
  PortForward(const PortForward&) = delete;
  PortForward& operator=(const PortForward&) = delete;

  // First bind attempt.
  void Start();
  // The guest listener is gone (or the rules changed): stop accepting; open
  // connections drain, then the state becomes closed.
  void BeginClose();
  void OnLinkReady();

  cove::v1::ForwardState state() const { return state_; }
  const ForwardKey& key() const { return key_; }
  const ForwardTarget& target() const { return target_; }
  cove::v1::Forward Info() const;
  // A TCP forward to a guest listener on 0.0.0.0, or on :: taking IPv4.
  bool CanUseLane() const;

  struct TcpListener;
  struct UdpSocket;

 private:
  void SetState(cove::v1::ForwardState state, std::string error);
  void TryBind();
  // Binds the host end on `ip` and keeps the socket: 0, or a libuv error.
  int Bind(const std::string& ip);
  int BindTcp(const std::string& ip);
  int BindUdp(const std::string& ip);
  static void Close(TcpListener* listener);
  static void Close(UdpSocket* socket);
  // What each connection (TCP) or session (UDP) opens in the guest.
  cove::agent::v1::StreamOpen GuestTarget() const;
  void CloseSockets();
  void OnBindError(int rc);
  void MaybeClosed();

  Env env_;
  const ForwardKey key_;
  const ForwardTarget target_;
  std::function<void(const PortForward&)> on_change_;
  cove::v1::ForwardState state_ = cove::v1::FORWARD_STATE_PENDING;
  std::string error_;
  std::string holder_;
  uint32_t retries_ = 0;
  uint64_t retry_ms_ = kFirstRetryMs;
  bool claimed_ = false;
  bool lane_held_ = false;         // a reference on the lane to target_.guest_port
  std::vector<TcpListener*> tcp_;  // freed in their close callbacks
  std::vector<UdpSocket*> udp_;
  std::unique_ptr<ConnSet> conns_;  // TCP
  UdpSessions udp_sessions_;        // UDP
  Timer retry_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
