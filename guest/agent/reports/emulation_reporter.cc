#include "guest/agent/reports/emulation_reporter.h"

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

}  // namespace

void EmulationReporter::Prepare(Host& host, PollSet& poll) {
  if (host.greeted()) poll.WakeBy(emulation_.NextDueMs());
}

void EmulationReporter::Tick(Host& host) {
  if (events_.last_process_event_ms() != process_event_ms_) {
    process_event_ms_ = events_.last_process_event_ms();
    emulation_.OnProcessEvent(process_event_ms_);
  }
  if (host.greeted()) Report(host, Emulation::Want::kIfChanged);
}

void EmulationReporter::OnSessionStart(int64_t greeted_ms, Host& host) {
  Report(host, Emulation::Want::kAlways);
}

void EmulationReporter::OnRefresh(Host& host) { Report(host, Emulation::Want::kRefresh); }

void EmulationReporter::Report(Host& host, Emulation::Want want) {
  if (auto report = emulation_.Take(NowMs(), want, names_)) {
    v1::GuestToHost msg;
    *msg.mutable_emulation() = std::move(*report);
    host.Send(msg);
  }
}

}  // namespace cove::agent
