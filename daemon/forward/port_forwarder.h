// A machine's port forwards: fed the machine's spec (rules, static forwards)
// and the agent's listener sets, it decides with DesiredForwards which
// forwards should exist, opens and closes PortForwards to match, and reports
// every change. It owns the machine's LaneTable. See docs/ports.md.
//
// Threading: loop thread only. Owned by the machine while it runs: made
// with its socket forwards, closed (CloseAll) and destroyed with them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "cove/agent/v1/agent.pb.h"
#include "cove/v1/machines.pb.h"
#include "daemon/forward/lane_table.h"
#include "daemon/forward/port_forward_env.h"
#include "daemon/forward/port_rules.h"

namespace cove::daemon {

class PortForward;

class PortForwarder {
 public:
  // `on_change` gets a forward's Info() whenever its state or its route
  // changes.
  PortForwarder(PortForwardEnv env, std::function<void(const cove::v1::Forward&)> on_change);
  ~PortForwarder();
  PortForwarder(const PortForwarder&) = delete;
  PortForwarder& operator=(const PortForwarder&) = delete;

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

  PortForwardEnv env_;
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
