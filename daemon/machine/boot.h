// One hypervisor process, from its launch (or re-adoption by a new coved)
// until it exits: the VmInstance, the link to its guest agent, and the
// components that live as long as it does (forwards, execs, guest reports,
// the runtime's sockets). Destroying the Boot is the cleanup: the link stops
// (every stream resets, so execs and connections end), then the components
// go, newest first. Components that outlive a boot (mounts, guest health)
// are attached instead of owned.
//
// The Machine keeps the stored record, the state machine and the restart
// policy; everything that is true only of one boot lives here.
//
// Threading: loop thread only. Owned by the Machine.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cove/v1/machines.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/driver/driver.h"
#include "daemon/machine/boot_component.h"

namespace cove::daemon {

class Boot {
 public:
  Boot(std::unique_ptr<VmInstance> vm, std::unique_ptr<AgentLink> agent);
  ~Boot();
  Boot(const Boot&) = delete;
  Boot& operator=(const Boot&) = delete;

  VmInstance& vm() { return *vm_; }
  const VmInstance& vm() const { return *vm_; }
  AgentLink& agent() { return *agent_; }
  const AgentLink& agent() const { return *agent_; }

  // Owned: destroyed with the boot. Registers its guest handlers at once.
  template <typename T>
  T& Add(std::unique_ptr<T> component) {
    T& ref = *component;
    component->Register(*agent_);
    parts_.push_back(component.get());
    owned_.push_back(std::move(component));
    return ref;
  }
  // A component of the machine that outlives the boot.
  void Attach(BootComponent& component);

  // Hooks, to every component in the order they were added.
  void OnAgentHello();
  // The first component not ready (nullopt) or failed decides; OK when all
  // are ready.
  std::optional<absl::Status> Readiness() const;
  void OnRunning();
  void OnNotRunning();
  void AddToView(cove::v1::Machine& out) const;

  // This boot's own facts.
  uint64_t launch_ms = 0;  // SteadyNowMs() at launch; 0 for an adopted boot
  // Auto chose a hardware accelerator: a boot that shows it does not work
  // here falls back to tcg.
  bool accel_on_trial = false;
  bool guest_seen = false;     // the agent said hello
  std::string accel_fallback;  // set while qemu is killed to boot again under tcg: why
  std::string vm_failure;      // why qemu was killed when it could no longer run the guest

 private:
  std::unique_ptr<VmInstance> vm_;
  std::unique_ptr<AgentLink> agent_;
  std::vector<BootComponent*> parts_;  // owned and attached, in order
  std::vector<std::unique_ptr<BootComponent>> owned_;
};

}  // namespace cove::daemon
