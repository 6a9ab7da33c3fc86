// The forwards of one boot between host and guest: guest listeners to host
// ports (by the port rules and static forwards of the spec, while the machine
// runs) and the reverse sockets (a guest connection to a host socket).
//
// Owns the guest's Listeners reports and the streams it opens for reverse
// sockets.
// Threading: loop thread only. Owned by the Boot.
#pragma once

#include <memory>
#include <vector>

#include "cove/agent/v1/agent.pb.h"
#include "cove/v1/machines.pb.h"
#include "daemon/forward/port_forward.h"
#include "daemon/forward/stream_conn.h"
#include "daemon/machine/boot_component.h"

namespace cove::daemon {

class GuestForwards : public BootComponent {
 public:
  // Each forward holds a host socket: a guest must not be able to make coved
  // open them without end.
  static constexpr int kMaxGuestListeners = 1024;

  GuestForwards(BootContext ctx, PortRegistry& ports, cove::v1::MachineSpec spec);
  ~GuestForwards() override;

  // The spec's port rules, static forwards or reverse sockets changed.
  void SetSpec(const cove::v1::MachineSpec& spec);

  void Register(AgentLink& agent) override;
  void OnAgentHello() override;
  void OnRunning() override;
  void OnNotRunning() override;
  void AddToView(cove::v1::Machine& out) const override;

 private:
  void OnListeners(const cove::agent::v1::Listeners& listeners);
  std::optional<StreamCallbacks> OnReverseOpen(uint32_t id,
                                               const cove::agent::v1::StreamOpen& what);
  void OnForwardChange(const cove::v1::Forward& forward);

  BootContext ctx_;
  PortRegistry& ports_registry_;
  cove::v1::MachineSpec spec_;
  // The agent's last listener set of this boot, kept for when ports_ opens.
  cove::agent::v1::Listeners listeners_;
  std::unique_ptr<PortForwarder> ports_;  // while the machine runs
  // Host connections made through reverse sockets.
  std::vector<std::unique_ptr<StreamConn>> reverse_conns_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace cove::daemon
