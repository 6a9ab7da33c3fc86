#include "guest/agent/mounts/mounts_reporter.h"

#include <vector>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

}  // namespace

void MountsReporter::Apply(const google::protobuf::RepeatedPtrField<v1::GuestMount>& wanted,
                           Host& host) {
  for (v1::MountStatus& status :
       mounts_.Apply(std::vector<v1::GuestMount>(wanted.begin(), wanted.end()))) {
    v1::GuestToHost msg;
    *msg.mutable_mount_status() = std::move(status);
    host.Send(msg);
  }
}

void MountsReporter::Prepare(Host& host, PollSet& poll) {
  if (!host.connected()) return;
  // Guest writes to cove mounts, for echo suppression.
  if (const int fd = mounts_.PollFd(NowMs()); fd >= 0) {
    poll.Add(fd, POLLIN, [this](short revents) {
      if (revents & POLLIN) mounts_.OnGuestWrites(NowMs());
    });
  }
  if (host.greeted()) poll.WakeBy(mounts_.NextDueMs());
}

void MountsReporter::Tick(Host& host) {
  if (host.connected()) mounts_.Tick(NowMs());
  // The listener watcher sees every process event, also those it drains
  // while it polls fast; the scan follows the same events.
  if (events_.last_process_event_ms() != process_event_ms_) {
    process_event_ms_ = events_.last_process_event_ms();
    mounts_.OnProcessEvents(process_event_ms_);
  }
  if (host.greeted()) Report(host, false);
}

void MountsReporter::OnSessionStart(int64_t greeted_ms, Host& host) { Report(host, true); }

void MountsReporter::Report(Host& host, bool force) {
  for (v1::WatchedDirs& dirs : mounts_.TakeWatchedDirs(NowMs(), force)) {
    v1::GuestToHost msg;
    *msg.mutable_watched_dirs() = std::move(dirs);
    host.Send(msg);
  }
}

}  // namespace cove::agent
