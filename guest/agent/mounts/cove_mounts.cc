// CoveMounts: what the agent's loop drives for host directory mounts.
#include <algorithm>
#include <climits>

#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"
#include "guest/agent/mounts/mounts.h"

namespace cove::agent {

std::vector<v1::MountStatus> CoveMounts::Apply(const std::vector<v1::GuestMount>& wanted) {
  std::vector<v1::MountStatus> statuses;
  for (const v1::GuestMount& m : wanted) {
    v1::MountStatus status;
    status.set_tag(m.tag());
    if (m.type() != v1::GuestMount::VIRTIOFS && m.type() != v1::GuestMount::NINEP) {
      status.set_error("mount " + m.tag() + " on " + m.guest_path() +
                       ": unknown file system type " + std::to_string(m.type()));
    } else {
      const MountResult result = EnsureMounted(MountRequest{
          m.tag(), m.guest_path(),
          m.type() == v1::GuestMount::NINEP ? FsType::kNineP : FsType::kVirtiofs, m.read_only()});
      status.set_mounted(result.mounted);
      status.set_error(result.error);
      if (result.newly_mounted) {
        Log("mounted %s %s on %s%s", FsTypeName(result.mount.type), m.tag().c_str(),
            result.mount.path.c_str(), m.read_only() ? " (read-only)" : "");
      }
      if (result.mounted) Remember(result.mount);
    }
    if (!status.error().empty()) Log("%s", status.error().c_str());
    statuses.push_back(std::move(status));
  }
  return statuses;
}

void CoveMounts::Remember(const CoveMount& mount) {
  // The tag names the mount in WatchedDirs and HostChanges: the first wins.
  for (const CoveMount& known : mounts_) {
    if (known.tag == mount.tag) return;
  }
  mounts_.push_back(mount);
  writes_.Watch(mount.path);
  rescan_ = true;
}

const CoveMount* CoveMounts::FindByTag(const std::string& tag) const {
  for (const CoveMount& m : mounts_) {
    if (m.tag == tag) return &m;
  }
  return nullptr;
}

int64_t CoveMounts::NextDueMs() const {
  if (mounts_.empty()) return INT64_MAX;
  if (rescan_ || !pending_.empty()) return 0;
  return std::min({schedule_.NextDueMs(), walk_due_ms_, writes_.NextDueMs()});
}

std::vector<v1::WatchedDirs> CoveMounts::TakeWatchedDirs(int64_t now_ms, bool force) {
  if (mounts_.empty()) return {};
  const bool scan = force || rescan_ || now_ms >= schedule_.NextDueMs();
  if (!scan && now_ms < walk_due_ms_) return {};
  const std::map<std::string, std::vector<std::string>> found =
      scan ? finder_.Scan(mounts_, now_ms) : finder_.Continue(mounts_, now_ms);
  const int64_t end_ms = ClockMs(CLOCK_MONOTONIC);
  if (scan) schedule_.OnScanned(now_ms, end_ms);
  rescan_ = false;
  walk_due_ms_ =
      finder_.walking()
          ? end_ms + std::max(kWalkStepGapMs, (end_ms - now_ms) * ScanSchedule::kMaxDutyDivisor)
          : INT64_MAX;
  std::vector<v1::WatchedDirs> changed;
  for (const auto& [tag, dirs] : found) {
    auto sent = sent_dirs_.find(tag);
    if (!force && sent != sent_dirs_.end() && sent->second == dirs) continue;
    v1::WatchedDirs msg;
    msg.set_tag(tag);
    for (const std::string& dir : dirs) msg.add_dirs(dir);
    changed.push_back(std::move(msg));
    sent_dirs_[tag] = dirs;
  }
  return changed;
}

void CoveMounts::OnHostChanges(const v1::HostChanges& changes) {
  for (const v1::HostChanges::Change& change : changes.changes()) {
    if (pending_.size() >= kMaxPendingChanges) {
      if (!dropped_logged_) {
        Log("more than %zu host changes waiting; dropping the rest", kMaxPendingChanges);
        dropped_logged_ = true;
      }
      return;
    }
    pending_.push_back(change);
  }
}

void CoveMounts::Tick(int64_t now_ms) {
  if (pending_.empty()) return;
  // The guest's writes the host saw happened before it reported them, so
  // their events are queued by now, whatever the hold.
  writes_.Drain(echo_, now_ms);
  size_t rejected = 0;
  std::string example;
  for (size_t done = 0; done < kChangesPerTurn && !pending_.empty(); ++done) {
    const v1::HostChanges::Change change = std::move(pending_.front());
    pending_.pop_front();
    const CoveMount* mount = FindByTag(change.tag());
    const bool known_kind = change.kind() == v1::HostChanges::Change::WRITTEN ||
                            change.kind() == v1::HostChanges::Change::REMOVED;
    ReplayResult result = ReplayResult::kRejected;
    if (mount != nullptr && known_kind) {
      result =
          ReplayChange(*mount, change.path(),
                       change.kind() == v1::HostChanges::Change::WRITTEN ? ChangeKind::kWritten
                                                                         : ChangeKind::kRemoved,
                       echo_, now_ms);
    }
    if (result == ReplayResult::kRejected) {
      if (rejected++ == 0) example = change.tag() + ":" + change.path();
    } else if (result == ReplayResult::kFailed && failed_logged_.insert(mount->tag).second) {
      // A read-only mount, typically: nothing there can show the change.
      Log("cannot make host changes in %s visible to guest watchers (e.g. %s)%s",
          mount->path.c_str(), change.path().c_str(), mount->read_only ? "; it is read-only" : "");
    }
  }
  if (rejected > 0) {
    Log("ignored %zu host changes of unknown mounts, kinds or unsafe paths (e.g. '%s')", rejected,
        example.c_str());
  }
  if (pending_.empty()) dropped_logged_ = false;
}

}  // namespace cove::agent
