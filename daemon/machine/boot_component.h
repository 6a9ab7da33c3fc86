// What a per-boot feature looks like to the machine: a component with hooks
// into one boot (daemon/machine/boot.h). A new per-boot feature is one class
// behind this interface, added to the boot in Machine::AddComponents, plus
// its proto messages and CLI; guest messages reach it through the handlers it
// registers on the agent link.
//
// Threading: loop thread only; every hook runs on it.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "cove/v1/machines.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/driver/driver.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

// What a component of one boot may use. Everything outlives the component.
struct BootContext {
  EventLoop& loop;
  std::string machine;  // its name, for messages and logs
  std::string dir;      // its directory
  AgentLink& agent;
  VmInstance& vm;
  // Publishes a machine event of `kind` (the machine's name and view filled
  // in); `fill` adds the kind's own fields.
  std::function<void(cove::v1::EventKind kind, const std::string& message,
                     const std::function<void(cove::v1::Event&)>& fill)>
      publish;
  // Call when Readiness() may have changed.
  std::function<void()> readiness_changed;
};

class BootComponent {
 public:
  virtual ~BootComponent() = default;
  // Registers the handlers of the guest messages it owns
  // (AgentLink::Handle, HandleOpen); called once, before the link starts.
  virtual void Register(AgentLink& agent) { (void)agent; }
  // The agent said hello on a fresh session (the first, or after the link
  // came back).
  virtual void OnAgentHello() {}
  // Whether the start may finish: nullopt while it waits for something, OK
  // when ready; an error fails the start.
  virtual std::optional<absl::Status> Readiness() const { return absl::OkStatus(); }
  // The machine is running (a start finished, or a running machine was
  // re-adopted), or no longer is (a stop began, or it failed).
  virtual void OnRunning() {}
  virtual void OnNotRunning() {}
  // Adds what it knows to a client's view of the machine.
  virtual void AddToView(cove::v1::Machine& out) const { (void)out; }
};

}  // namespace cove::daemon
