// What a machine's port forwards need from around them: the daemon loop,
// the machine's name, the daemon-wide PortRegistry, the machine's agent link
// and, when the hypervisor has them, its lanes. Spelled PortForward::Env
// where it is filled in (the machine, the tests).
//
// Ownership: the loop and the registry outlive every forward that refers to
// them; `lanes` is the PortForwarder's LaneTable (set by the PortForwarder
// from open_lane/close_lane). Threading: loop thread only.
#pragma once

#include <functional>
#include <string>

#include "daemon/agent/agent_link.h"
#include "daemon/forward/lane_table.h"
#include "daemon/forward/port_registry.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

struct PortForwardEnv {
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

}  // namespace cove::daemon
