#include "daemon/machine/boot.h"

namespace cove::daemon {

Boot::Boot(std::unique_ptr<VmInstance> vm, std::unique_ptr<AgentLink> agent)
    : vm_(std::move(vm)), agent_(std::move(agent)) {}

Boot::~Boot() {
  // Streams reset while their owners still exist; then the owners go.
  agent_->Stop();
  while (!owned_.empty()) owned_.pop_back();
}

void Boot::Attach(BootComponent& component) {
  component.Register(*agent_);
  parts_.push_back(&component);
}

void Boot::OnAgentHello() {
  guest_seen = true;
  for (BootComponent* c : parts_) c->OnAgentHello();
}

std::optional<absl::Status> Boot::Readiness() const {
  for (const BootComponent* c : parts_) {
    std::optional<absl::Status> ready = c->Readiness();
    if (!ready.has_value() || !ready->ok()) return ready;
  }
  return absl::OkStatus();
}

void Boot::OnRunning() {
  for (BootComponent* c : parts_) c->OnRunning();
}

void Boot::OnNotRunning() {
  for (BootComponent* c : parts_) c->OnNotRunning();
}

void Boot::AddToView(cove::v1::Machine& out) const {
  for (const BootComponent* c : parts_) c->AddToView(out);
}

}  // namespace cove::daemon
