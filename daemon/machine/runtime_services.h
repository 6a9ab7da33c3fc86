// The container runtime of one boot: which guest services the agent runs for
// it, when it counts as ready (the start's last step), and the host sockets
// that reach it while the machine runs ($COVE_HOME/machines/NAME/
// containerd.sock, docker.sock). What differs between containerd and docker
// is one table, RuntimeFactsOf.
//
// Owns the guest's ServiceStatus reports.
// Threading: loop thread only. Owned by the Boot.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cove/v1/machines.pb.h"
#include "daemon/forward/socket_forward.h"
#include "daemon/machine/boot_component.h"

namespace cove::daemon {

struct RuntimeFacts {
  struct Socket {
    std::string name;        // the host socket's file name, without ".sock"
    std::string guest_path;  // what it connects to in the guest
    std::string* (cove::v1::MachineSockets::*field)();  // where the view shows it
  };
  // The services the agent runs, in start order; the last one's readiness
  // means the machine is running.
  std::vector<std::string> services;
  std::vector<Socket> sockets;
  const std::string& ready_service() const { return services.back(); }
};
const RuntimeFacts& RuntimeFactsOf(cove::v1::Runtime runtime);

class RuntimeServices : public BootComponent {
 public:
  // Guest services coved keeps at most; a broken or hostile guest must not
  // grow the view without limit.
  static constexpr int kMaxServices = 16;

  RuntimeServices(BootContext ctx, cove::v1::Runtime runtime)
      : ctx_(std::move(ctx)), facts_(RuntimeFactsOf(runtime)) {}

  void Register(AgentLink& agent) override;
  std::optional<absl::Status> Readiness() const override;
  void OnRunning() override;
  void OnNotRunning() override { sockets_.clear(); }
  void OnAgentHello() override;
  void AddToView(cove::v1::Machine& out) const override;

 private:
  void OnServiceStatus(const cove::agent::v1::ServiceStatus& status);

  BootContext ctx_;
  const RuntimeFacts& facts_;
  std::vector<cove::v1::ServiceInfo> services_;
  bool ready_ = false;  // the ready service reported READY during this boot
  struct OpenSocket {
    std::unique_ptr<SocketForward> forward;
    const RuntimeFacts::Socket* facts;
  };
  std::vector<OpenSocket> sockets_;
};

}  // namespace cove::daemon
