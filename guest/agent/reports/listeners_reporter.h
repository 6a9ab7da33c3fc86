// The guest's listening sockets to the host, for automatic port forwarding
// (docs/ports.md): the whole set as Listeners when it changed, and at the
// start of a session and on a Refresh whatever it holds. Its watcher's
// process events also pace the mounts' and emulation's scans (they read
// watcher().last_process_event_ms()).
#pragma once

#include "guest/agent/core/reporter.h"
#include "guest/agent/reports/listeners.h"

namespace cove::agent {

class ListenersReporter final : public Reporter {
 public:
  // Subscribes to process events (logged when unavailable).
  ListenersReporter();

  const ListenerWatcher& watcher() const { return watcher_; }

  void Prepare(Host& host, PollSet& poll) override;
  void Tick(Host& host) override;
  void OnSessionStart(int64_t greeted_ms, Host& host) override;
  void OnRefresh(Host& host) override;

 private:
  // Lists the listeners when due (or `force`) and sends them when they
  // changed (or `force`).
  void Report(Host& host, bool force);

  ListenerWatcher watcher_;
};

}  // namespace cove::agent
