// Which cove machine holds which host end (proto, host ip, host port),
// daemon-wide, so that a forward in conflict can name the cove machine in
// its way rather than "another program". See docs/ports.md.
//
// Threading: loop thread only. Owned by the daemon (one for all machines);
// each machine's forwards hold a reference (PortForwardEnv::registry) and
// claim a host end while they have it bound.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "cove/v1/machines.pb.h"
#include "daemon/forward/port_rules.h"

namespace cove::daemon {

class PortRegistry {
 public:
  void Claim(const ForwardKey& key, const std::string& machine) { holders_[key] = machine; }
  // Only `machine`'s own claim on `key` is released.
  void Release(const ForwardKey& key, const std::string& machine);
  // A machine other than `except` holding `proto`/`port` on any address.
  std::string HolderOf(cove::v1::Proto proto, uint16_t port, const std::string& except) const;

 private:
  std::map<ForwardKey, std::string> holders_;
};

}  // namespace cove::daemon
