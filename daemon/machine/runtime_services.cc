#include "daemon/machine/runtime_services.h"

#include "absl/strings/str_cat.h"
#include "daemon/machine/guest_health.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

const RuntimeFacts& RuntimeFactsOf(cove::v1::Runtime runtime) {
  static const RuntimeFacts kContainerd{
      .services = {"containerd"},
      .sockets = {{"containerd", "/run/containerd/containerd.sock",
                   &cove::v1::MachineSockets::mutable_containerd}},
  };
  static const RuntimeFacts kDocker{
      .services = {"containerd", "dockerd"},
      .sockets = {{"containerd", "/run/containerd/containerd.sock",
                   &cove::v1::MachineSockets::mutable_containerd},
                  {"docker", "/run/docker.sock", &cove::v1::MachineSockets::mutable_docker}},
  };
  return runtime == cove::v1::RUNTIME_DOCKER ? kDocker : kContainerd;
}

void RuntimeServices::Register(AgentLink& agent) {
  agent.Handle(
      cove::agent::v1::GuestToHost::kServiceStatus,
      [this](const cove::agent::v1::GuestToHost& msg) { OnServiceStatus(msg.service_status()); });
}

std::optional<absl::Status> RuntimeServices::Readiness() const {
  if (ready_) return absl::OkStatus();
  return std::nullopt;
}

void RuntimeServices::OnServiceStatus(const cove::agent::v1::ServiceStatus& status) {
  cove::v1::ServiceInfo info;
  info.set_name(BoundedGuestText(status.name()));
  // The agent's values are the API's, one for one.
  info.set_state(cove::v1::ServiceState_IsValid(status.state())
                     ? static_cast<cove::v1::ServiceState>(status.state())
                     : cove::v1::SERVICE_STATE_UNSPECIFIED);
  info.set_pid(status.pid());
  info.set_restarts(status.restarts());
  info.set_last_exit(BoundedGuestText(status.last_exit()));
  bool replaced = false;
  for (auto& s : services_) {
    if (s.name() == info.name()) {
      s = info;
      replaced = true;
    }
  }
  if (!replaced && services_.size() >= kMaxServices) {
    spdlog::warn("{}: ignoring guest service {}: already {} services", ctx_.machine, info.name(),
                 kMaxServices);
    return;
  }
  if (!replaced) services_.push_back(info);
  if (status.state() == cove::agent::v1::ServiceStatus::RESTARTING) {
    spdlog::warn("{}: guest service {} {}; the agent restarts it", ctx_.machine, status.name(),
                 status.last_exit());
  }
  if (status.name() == facts_.ready_service() &&
      status.state() == cove::agent::v1::ServiceStatus::READY && !ready_) {
    ready_ = true;
    ctx_.readiness_changed();
  }
}

void RuntimeServices::OnRunning() {
  sockets_.clear();
  for (const RuntimeFacts::Socket& s : facts_.sockets) {
    cove::agent::v1::StreamOpen target;
    target.set_unix_connect(s.guest_path);
    AgentLink* agent = &ctx_.agent;
    auto fwd = std::make_unique<SocketForward>(ctx_.loop, absl::StrCat(ctx_.machine, "/", s.name),
                                               absl::StrCat(ctx_.dir, "/", s.name, ".sock"),
                                               std::move(target), [agent]() { return agent; });
    if (auto st = fwd->Open(); !st.ok()) {
      spdlog::error("{}: {}", ctx_.machine, std::string(st.message()));
      continue;
    }
    sockets_.push_back({std::move(fwd), &s});
  }
}

void RuntimeServices::OnAgentHello() {
  for (auto& s : sockets_) s.forward->OnLinkReady();
}

void RuntimeServices::AddToView(cove::v1::Machine& out) const {
  for (const auto& s : services_) *out.add_services() = s;
  for (const OpenSocket& s : sockets_) {
    *(out.mutable_sockets()->*(s.facts->field))() = s.forward->host_path();
  }
}

}  // namespace cove::daemon
