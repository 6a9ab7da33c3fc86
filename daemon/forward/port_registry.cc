#include "daemon/forward/port_registry.h"

namespace cove::daemon {

void PortRegistry::Release(const ForwardKey& key, const std::string& machine) {
  auto it = holders_.find(key);
  if (it != holders_.end() && it->second == machine) holders_.erase(it);
}

std::string PortRegistry::HolderOf(cove::v1::Proto proto, uint16_t port,
                                   const std::string& except) const {
  for (const auto& [key, machine] : holders_) {
    if (key.proto == proto && key.host_port == port && machine != except) return machine;
  }
  return "";
}

}  // namespace cove::daemon
