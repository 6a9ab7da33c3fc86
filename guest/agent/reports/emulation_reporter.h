// Foreign binaries to the host: which processes run through the binfmt
// handlers (docs/foreign.md), as Emulation when it changed, at the start of
// a session whatever it holds, and after a fresh scan on a Refresh. The
// handlers are registered on the first HostHello that wants them.
#pragma once

#include <cstdint>

#include "guest/agent/core/reporter.h"
#include "guest/agent/reports/emulation.h"
#include "guest/agent/reports/listeners.h"
#include "guest/agent/runtime/containers.h"

namespace cove::agent {

class EmulationReporter final : public Reporter {
 public:
  // Containers are named through `names`; processes starting and exiting
  // (`events`) make the next look come sooner.
  EmulationReporter(ContainerNames& names, const ListenerWatcher& events)
      : names_(names), events_(events) {}

  // From each HostHello, before the services start: their containers may be
  // of another platform.
  void Configure(bool wanted) { emulation_.Configure(wanted); }
  const Emulation& emulation() const { return emulation_; }

  void Prepare(Host& host, PollSet& poll) override;
  void Tick(Host& host) override;
  void OnSessionStart(int64_t greeted_ms, Host& host) override;
  void OnRefresh(Host& host) override;

 private:
  void Report(Host& host, Emulation::Want want);

  ContainerNames& names_;
  const ListenerWatcher& events_;
  Emulation emulation_;           // binfmt handlers: registered once, for the boot
  int64_t process_event_ms_ = 0;  // the last process event handed to emulation_
};

}  // namespace cove::agent
