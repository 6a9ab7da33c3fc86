#include "daemon/machine/emulation_report.h"

#include "daemon/machine/guest_health.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

void EmulationReport::Register(AgentLink& agent) {
  agent.Handle(cove::agent::v1::GuestToHost::kEmulation,
               [this](const cove::agent::v1::GuestToHost& msg) { OnEmulation(msg.emulation()); });
}

void EmulationReport::OnEmulation(const cove::agent::v1::Emulation& emulation) {
  last_.Clear();
  for (const std::string& h : emulation.handlers()) {
    if (last_.binfmt_handlers_size() == kMaxHandlers) break;
    last_.add_binfmt_handlers(BoundedGuestText(h));
  }
  for (const auto& p : emulation.processes()) {
    if (last_.emulated_size() == kMaxProcesses) break;
    auto* out = last_.add_emulated();
    out->set_pid(p.pid());
    out->set_comm(BoundedGuestText(p.comm()));
    out->set_arch(BoundedGuestText(p.arch()));
    out->set_cgroup(BoundedGuestText(p.cgroup()));
    out->set_rss_bytes(p.rss_bytes());
    out->set_container_id(BoundedGuestText(p.container_id()));
    out->set_container_name(BoundedGuestText(p.container_name()));
  }
  if (!emulation.error().empty()) {
    spdlog::warn("{}: foreign binaries: {}", machine_, BoundedGuestText(emulation.error()));
  }
}

void EmulationReport::AddToView(cove::v1::Machine& out) const {
  *out.mutable_binfmt_handlers() = last_.binfmt_handlers();
  *out.mutable_emulated() = last_.emulated();
}

}  // namespace cove::daemon
