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
// TCP: every host connection is one agent link stream (ConnSet, StreamConn).
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

  PortForward::Env env_;
  std::function<void(const cove::v1::Forward&)> on_change_;
  cove::v1::MachineSpec spec_;
  std::vector<cove::agent::v1::Listener> listeners_;
  std::map<ForwardKey, std::unique_ptr<PortForward>> active_;
  std::vector<std::unique_ptr<PortForward>> closing_;
  bool reap_posted_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
