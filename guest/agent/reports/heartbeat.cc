#include "guest/agent/reports/heartbeat.h"

#include <algorithm>

#include "guest/agent/core/control.h"
#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

}  // namespace

void HeartbeatReporter::Prepare(Host& host, PollSet& poll) {
  if (host.greeted()) poll.WakeBy(next_ms_);
}

void HeartbeatReporter::Tick(Host& host) {
  if (!host.greeted() || NowMs() < next_ms_) return;
  host.Send(MakeHeartbeat(++seq_));
  oom_.AfterBeat(host);
  // Skips missed beats (e.g. the VM was paused) rather than bursting them.
  next_ms_ = std::max(next_ms_ + interval_ms_, NowMs() + 1);
}

void HeartbeatReporter::OnSessionStart(int64_t greeted_ms, Host& host) {
  next_ms_ = greeted_ms + interval_ms_;
}

void HeartbeatReporter::OnRefresh(Host& host) {
  host.Send(MakeHeartbeat(++seq_));
  oom_.ReadLog(&host);
}

}  // namespace cove::agent
