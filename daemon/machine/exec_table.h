// The commands running in the guest during one boot (cove exec, cove shell),
// by their stdout stream: routes the agent's ExecExited and the stderr
// streams it opens to their ExecSession. When the boot ends, the link's
// streams reset and every session finishes.
//
// Threading: loop thread only. Owned by the Boot.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "absl/status/statusor.h"
#include "daemon/machine/boot_component.h"
#include "daemon/machine/exec_session.h"

namespace cove::daemon {

class ExecTable : public BootComponent {
 public:
  explicit ExecTable(AgentLink& agent) : agent_(agent) {}

  // Starts `start` in the guest; UNAVAILABLE when the link has no session.
  absl::StatusOr<std::shared_ptr<ExecSession>> Start(const cove::v1::ExecStart& start,
                                                     std::shared_ptr<ExecSession::Output> output);

  void Register(AgentLink& agent) override;

 private:
  AgentLink& agent_;
  std::map<uint32_t, std::shared_ptr<ExecSession>> execs_;  // by stdout stream id
};

}  // namespace cove::daemon
