// The cove mounts in the agent's loop (mounts.h): mounting what each
// HostHello lists (a MountStatus for each), the guest's writes to them (for
// echo suppression), the replay of the host's changes, and the directories
// guest programs watch in them, as WatchedDirs: the sets that changed, and
// all of them at the start of a session. Mounts outlive sessions: they last
// for the boot.
#pragma once

#include <cstdint>

#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/core/reporter.h"
#include "guest/agent/mounts/mounts.h"
#include "guest/agent/reports/listeners.h"

namespace cove::agent {

class MountsReporter final : public Reporter {
 public:
  // Processes starting and exiting (`events`) make the scan come sooner:
  // programs start watching soon after they start.
  explicit MountsReporter(const ListenerWatcher& events) : events_(events) {}

  // Mounts each of `wanted` not mounted yet and sends a status for each.
  void Apply(const google::protobuf::RepeatedPtrField<v1::GuestMount>& wanted, Host& host);
  // Queues the host's changes; Tick replays them.
  void OnHostChanges(const v1::HostChanges& changes) { mounts_.OnHostChanges(changes); }

  void Prepare(Host& host, PollSet& poll) override;
  void Tick(Host& host) override;
  void OnSessionStart(int64_t greeted_ms, Host& host) override;

 private:
  // Scans when due (or `force`) and sends the sets that changed (all with
  // `force`).
  void Report(Host& host, bool force);

  const ListenerWatcher& events_;
  CoveMounts mounts_;
  int64_t process_event_ms_ = 0;  // the last process event handed to mounts_
};

}  // namespace cove::agent
