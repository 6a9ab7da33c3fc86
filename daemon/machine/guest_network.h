// The guest's own network in one boot (Machine.guest.network), as the agent
// last reported it: its addresses, the route out and its nameservers.
//
// Owns the guest's GuestNetwork reports.
// Threading: loop thread only. Owned by the Boot.
#pragma once

#include "cove/agent/v1/agent.pb.h"
#include "daemon/machine/boot_component.h"

namespace cove::daemon {

class GuestNetworkReport : public BootComponent {
 public:
  // What coved keeps of a report: a broken or hostile guest must not grow
  // the view without limit.
  static constexpr int kMaxAddresses = 64;
  static constexpr int kMaxNameservers = 8;

  void Register(AgentLink& agent) override;
  void AddToView(cove::v1::Machine& out) const override;

 private:
  void OnNetwork(const cove::agent::v1::GuestNetwork& network);

  cove::v1::GuestNetwork last_;
  bool reported_ = false;
};

}  // namespace cove::daemon
