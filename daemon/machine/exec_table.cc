#include "daemon/machine/exec_table.h"

#include "common/errors.h"

namespace cove::daemon {

absl::StatusOr<std::shared_ptr<ExecSession>> ExecTable::Start(
    const cove::v1::ExecStart& start, std::shared_ptr<ExecSession::Output> output) {
  std::erase_if(execs_, [](const auto& kv) { return kv.second->finished(); });
  auto session = std::make_shared<ExecSession>(agent_, std::move(output));
  std::string error;
  if (!session->Begin(start, &error)) {
    return WithReason(absl::UnavailableError(error), cove::v1::AGENT_UNAVAILABLE,
                      {{"machine", start.name()}});
  }
  execs_[session->stream_id()] = session;
  return session;
}

void ExecTable::Register(AgentLink& agent) {
  agent.Handle(cove::agent::v1::GuestToHost::kExecExited,
               [this](const cove::agent::v1::GuestToHost& msg) {
                 if (auto it = execs_.find(msg.exec_exited().stream_id()); it != execs_.end()) {
                   it->second->OnExited(msg.exec_exited());
                 }
               });
  agent.HandleOpen(
      cove::agent::v1::StreamOpen::kExecStderrOf,
      [this](uint32_t id,
             const cove::agent::v1::StreamOpen& what) -> std::optional<StreamCallbacks> {
        auto it = execs_.find(what.exec_stderr_of());
        if (it == execs_.end()) return std::nullopt;
        return it->second->StderrCallbacks(id);
      });
}

}  // namespace cove::daemon
