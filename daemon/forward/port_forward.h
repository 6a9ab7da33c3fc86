// Port forwarding on the host: one PortForward per host end (proto, host ip,
// host port), each with an explicit state machine, and a PortForwarder per
// machine that decides from the guest's listeners, the machine's rules and
// its static forwards which forwards should exist. See docs/ports.md.
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
// datagrams, ended after kUdpIdleMs without traffic.
//
// Threading: loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cove/agent/v1/agent.pb.h"
#include "cove/v1/machines.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/driver/driver.h"
#include "daemon/forward/conn_set.h"
#include "daemon/forward/port_rules.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

// Which machine holds which host end, daemon-wide, so a conflict can name
// the cove machine in the way.
class PortRegistry {
 public:
  void Claim(const ForwardKey& key, const std::string& machine) { holders_[key] = machine; }
  void Release(const ForwardKey& key, const std::string& machine);
  // A machine other than `except` holding `proto`/`port` on any address.
  std::string HolderOf(cove::v1::Proto proto, uint16_t port, const std::string& except) const;

 private:
  std::map<ForwardKey, std::string> holders_;
};

// A machine's lanes (VmInstance::OpenLane), one per guest port, shared by
// the forwards to that port and closed with the last of them.
class LaneTable {
 public:
  using OpenFn = std::function<void(uint16_t guest_port, VmInstance::LaneDone done)>;
  using CloseFn = std::function<void(uint16_t host_port)>;
  // `on_change` runs when a lane comes up.
  LaneTable(std::string machine, OpenFn open, CloseFn close,
            std::function<void(uint16_t guest_port)> on_change);
  ~LaneTable();  // closes every lane
  LaneTable(const LaneTable&) = delete;
  LaneTable& operator=(const LaneTable&) = delete;

  void Acquire(uint16_t guest_port);
  void Release(uint16_t guest_port);
  // The lane's host port; 0 while it is being made, or could not be.
  uint16_t HostPort(uint16_t guest_port) const;

 private:
  struct Lane {
    int refs = 0;
    uint16_t host_port = 0;
    uint64_t generation = 0;  // tells a stale answer from the current one
  };
  const std::string machine_;
  OpenFn open_;
  CloseFn close_;
  std::function<void(uint16_t)> on_change_;
  std::map<uint16_t, Lane> lanes_;
  uint64_t next_generation_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class PortForward {
 public:
  static constexpr size_t kMaxConnections = 4096;
  static constexpr size_t kMaxUdpSessions = 256;
  static constexpr uint64_t kUdpIdleMs = 60000;
  // Conflict retries: from the first delay, doubling, up to the cap.
  static constexpr uint64_t kFirstRetryMs = 250;
  static constexpr uint64_t kMaxRetryMs = 2000;

  struct Env {
    EventLoop& loop;
    std::string machine;
    PortRegistry& registry;
    std::function<AgentLink*()> link;
    // Where lanes come from (the machine's VmInstance); unset: every
    // connection goes over the agent link.
    LaneTable::OpenFn open_lane = nullptr;
    LaneTable::CloseFn close_lane = nullptr;
    // Set by PortForwarder from the two above.
    LaneTable* lanes = nullptr;
  };

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
  struct UdpSession;

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
  // UDP
  void OnDatagram(UdpSocket* socket, const sockaddr* from, const char* data, size_t n);
  void SendToClient(UdpSession& session);
  void ExpireSessions();
  void EndSession(const std::string& peer, const std::string& why);

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
  bool lane_held_ = false;  // a reference on the lane to target_.guest_port
  std::vector<TcpListener*> tcp_;  // freed in their close callbacks
  std::vector<UdpSocket*> udp_;
  std::unique_ptr<ConnSet> conns_;                               // TCP
  std::map<std::string, std::unique_ptr<UdpSession>> sessions_;  // by peer address bytes
  Timer retry_timer_;
  Timer idle_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A machine's forwards. Feed it the machine's spec and the agent's listener
// sets; it opens, closes and reports forwards.
class PortForwarder {
 public:
  PortForwarder(PortForward::Env env, std::function<void(const cove::v1::Forward&)> on_change);
  ~PortForwarder();

  // The rules or static forwards changed (or first call): re-decide.
  void SetSpec(const cove::v1::MachineSpec& spec);
  void OnListeners(const cove::agent::v1::Listeners& listeners);
  void OnLinkReady();
  // The machine stops: every forward closes now (connections cut), each
  // reported closed.
  void CloseAll();

  // Every forward not yet closed, ordered by host end.
  std::vector<cove::v1::Forward> List() const;

 private:
  void Reconcile();
  void OnForwardChange(const PortForward& forward);
  void Reap();
  void OnLaneChange(uint16_t guest_port);

  PortForward::Env env_;
  std::function<void(const cove::v1::Forward&)> on_change_;
  std::unique_ptr<LaneTable> lanes_;
  cove::v1::MachineSpec spec_;
  std::vector<cove::agent::v1::Listener> listeners_;
  std::map<ForwardKey, std::unique_ptr<PortForward>> active_;
  std::vector<std::unique_ptr<PortForward>> closing_;
  bool reap_posted_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
