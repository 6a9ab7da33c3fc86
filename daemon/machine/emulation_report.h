// Foreign binaries in one boot, as the agent reports them: the binfmt
// handlers it registered and the processes running through them
// (Machine.binfmt_handlers, Machine.emulated).
//
// Owns the guest's Emulation reports.
// Threading: loop thread only. Owned by the Boot.
#pragma once

#include <string>

#include "cove/agent/v1/agent.pb.h"
#include "daemon/machine/boot_component.h"

namespace cove::daemon {

class EmulationReport : public BootComponent {
 public:
  // What coved keeps of a report: a broken or hostile guest must not grow
  // the view without limit.
  static constexpr int kMaxHandlers = 16;
  static constexpr int kMaxProcesses = 1024;

  explicit EmulationReport(std::string machine) : machine_(std::move(machine)) {}

  void Register(AgentLink& agent) override;
  void AddToView(cove::v1::Machine& out) const override;

 private:
  void OnEmulation(const cove::agent::v1::Emulation& emulation);

  std::string machine_;
  cove::v1::Machine last_;  // only binfmt_handlers and emulated are set
};

}  // namespace cove::daemon
