#include "guest/agent/reports/oom_reporter.h"

#include <algorithm>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

void SendKill(Host& host, v1::OomKill kill) {
  v1::GuestToHost msg;
  *msg.mutable_oom_kill() = std::move(kill);
  host.Send(msg);
}

}  // namespace

OomReporter::OomReporter(const std::string& kernel_log, ContainerNames& names,
                         const Emulation& emulation)
    : names_(names), emulation_(emulation) {
  if (!kernel_log.empty()) watch_.Open(kernel_log.c_str());
}

void OomReporter::Prepare(Host& host, PollSet& poll) {
  if (!host.connected() || watch_.fd() < 0) return;
  poll.Add(watch_.fd(), POLLIN, [this, &host](short revents) {
    if (revents & POLLIN) ReadLog(&host);
  });
}

void OomReporter::OnSessionStart(int64_t greeted_ms, Host& host) {
  // This boot's kills, for a host that was away; then whatever is new.
  ReadLog(nullptr);
  for (v1::OomKill& kill : watch_.History()) SendKill(host, std::move(kill));
}

void OomReporter::ReadLog(Host* host) {
  names_until_ms_ = NowMs() + kNameTimeoutMs;
  for (v1::OomKill& kill : watch_.OnReadable()) {
    if (host == nullptr || !host->greeted()) continue;  // in the history for the next one
    SendKill(*host, std::move(kill));
  }
}

void OomReporter::AfterBeat(Host& host) {
  ReadLog(&host);
  names_until_ms_ = NowMs() + kNameTimeoutMs;
  for (v1::OomKill& kill : watch_.CheckCounters(static_cast<uint64_t>(ClockMs(CLOCK_BOOTTIME)))) {
    SendKill(host, std::move(kill));
  }
}

void OomReporter::Enrich(v1::OomKill& kill) {
  kill.set_mem_total_bytes(ReadMemInfo().total_bytes);
  // Longer than a scan's ask: dockerd is busy with this very container's
  // exit. One budget for all the kills of one read, though.
  const int ask_ms =
      static_cast<int>(std::clamp<int64_t>(names_until_ms_ - NowMs(), 0, kNameTimeoutMs));
  if (auto container =
          names_.Resolve(kill.task_cgroup(), ask_ms, ContainerNames::Wait::kSkipIfSilent)) {
    kill.set_container_id(container->id);
    kill.set_container_name(container->name);
  }
  kill.set_emulated_arch(emulation_.ArchOf(kill.pid()));
}

}  // namespace cove::agent
