// The supervised services in the agent's loop: the pidfds of adopted
// services, the supervisor's deadlines (starts, restarts, readiness checks),
// and telling the image's boot, once, that the services are ready. It runs
// while the host is away too. The services' statuses go to the host through
// the Supervisor's own callback, whenever they change.
#pragma once

#include <string>

#include "guest/agent/core/reporter.h"
#include "guest/agent/runtime/services.h"

namespace cove::agent {

class ServicesReporter final : public Reporter {
 public:
  // `runtime_ready_fifo` is told (a line written to it) when the wanted
  // services are all ready; empty: none.
  ServicesReporter(Supervisor& supervisor, std::string runtime_ready_fifo)
      : supervisor_(supervisor), runtime_ready_fifo_(std::move(runtime_ready_fifo)) {}

  void Prepare(Host& host, PollSet& poll) override;
  void Tick(Host& host) override;

 private:
  // Tells runtime_ready_fifo_, once, when the services are ready.
  void MaybeTellRuntimeReady();

  Supervisor& supervisor_;
  std::string runtime_ready_fifo_;
  bool runtime_ready_told_ = false;
};

}  // namespace cove::agent
