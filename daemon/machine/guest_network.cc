#include "daemon/machine/guest_network.h"

#include "daemon/machine/guest_health.h"

namespace cove::daemon {

void GuestNetworkReport::Register(AgentLink& agent) {
  agent.Handle(cove::agent::v1::GuestToHost::kNetwork,
               [this](const cove::agent::v1::GuestToHost& msg) { OnNetwork(msg.network()); });
}

void GuestNetworkReport::OnNetwork(const cove::agent::v1::GuestNetwork& network) {
  last_.Clear();
  reported_ = true;
  for (const auto& a : network.addresses()) {
    if (last_.addresses_size() == kMaxAddresses) break;
    auto* out = last_.add_addresses();
    out->set_interface(BoundedGuestText(a.interface()));
    out->set_address(BoundedGuestText(a.address()));
    out->set_prefix_length(a.prefix_length());
  }
  last_.set_gateway(BoundedGuestText(network.gateway()));
  last_.set_gateway_interface(BoundedGuestText(network.gateway_interface()));
  for (const std::string& ns : network.nameservers()) {
    if (last_.nameservers_size() == kMaxNameservers) break;
    last_.add_nameservers(BoundedGuestText(ns));
  }
}

void GuestNetworkReport::AddToView(cove::v1::Machine& out) const {
  if (reported_) *out.mutable_guest()->mutable_network() = last_;
}

}  // namespace cove::daemon
