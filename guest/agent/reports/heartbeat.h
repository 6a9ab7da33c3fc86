// The Heartbeat of a greeted session (docs/agent-link.md, "Heartbeats"): one
// interval after the first HostHello, then every interval; beats missed
// while the VM was paused are skipped, not sent in a burst. The OOM watch
// rides on it: right after each beat the kernel log is read and the cgroups'
// OOM counters are checked (OomReporter::AfterBeat).
#pragma once

#include <cstdint>

#include "guest/agent/core/reporter.h"
#include "guest/agent/reports/oom_reporter.h"

namespace cove::agent {

class HeartbeatReporter final : public Reporter {
 public:
  HeartbeatReporter(int interval_ms, OomReporter& oom) : interval_ms_(interval_ms), oom_(oom) {}

  void Prepare(Host& host, PollSet& poll) override;
  void Tick(Host& host) override;
  void OnSessionStart(int64_t greeted_ms, Host& host) override;
  // A beat out of turn, and whatever the kernel log has; the next one is
  // still due when it was.
  void OnRefresh(Host& host) override;

 private:
  int interval_ms_;
  OomReporter& oom_;
  uint64_t seq_ = 0;  // counts up for the agent's life, across sessions
  int64_t next_ms_ = 0;
};

}  // namespace cove::agent
