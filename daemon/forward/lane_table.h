// A machine's lanes (VmInstance::OpenLane: a host port through which the
// hypervisor's network reaches a guest port), one per guest port, shared by
// the TCP forwards to that port and closed with the last of them. See
// docs/ports.md, "Routes".
//
// Opening a lane is asynchronous: its answer may come after the lane is no
// longer wanted, or after the table is gone (the machine stopped); such a
// lane is closed at once.
//
// Threading: loop thread only. Owned by the machine's PortForwarder, which
// destroys it after its forwards; each forward holds a reference on the lane
// to its guest port while it is listening.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "daemon/driver/driver.h"

namespace cove::daemon {

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

}  // namespace cove::daemon
