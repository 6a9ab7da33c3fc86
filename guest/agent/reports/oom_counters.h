// OOM kills the kernel log did not tell. cgroup v2 counts every OOM kill of
// a cgroup's processes in its memory.events (oom_kill, hierarchical); the log
// can lose a kill's lines (its ring overwritten in a burst of kills). The
// agent reads the counts of the cgroups one and two levels down (where
// docker's and containerd's containers are) at every heartbeat and sets them
// against the kills the log told.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace cove::agent {

// Per cgroup ("/docker/ID"): the kills its counter rose by that no log line
// has told yet. The counter rises just before the kernel writes the line, so
// such a surplus is only a suspicion at the check that finds it; the lines
// told before the next check clear it, and what they leave is kills the log
// missed. A rise found at that next check is a new suspicion, never added
// to the old one. Pure.
class MissedKills {
 public:
  static constexpr size_t kMaxCgroups = 256;

  // A kill the log told, of a process in `task_cgroup` (empty: unknown).
  void Told(const std::string& task_cgroup);
  // This check's counts (cgroup -> oom_kill); cgroups that are gone are
  // forgotten. Returns the kills the log missed, by the deepest cgroup that
  // counted them.
  std::map<std::string, uint64_t> Check(const std::map<std::string, uint64_t>& counts);

 private:
  struct Entry {
    uint64_t last = 0;       // the counter at the last check
    uint64_t suspected = 0;  // its rise then that no line had told
    uint64_t told = 0;       // lines for it (or below it) since
  };
  std::map<std::string, Entry> entries_;
  uint64_t unplaced_ = 0;          // lines without a cgroup since the last check
  uint64_t unplaced_carried_ = 0;  // those of the interval before, not yet used
};

// memory.events' oom_kill of every cgroup one and two levels below `root`
// (as "/NAME" and "/NAME/CHILD"), at most MissedKills::kMaxCgroups of them.
std::map<std::string, uint64_t> ReadOomKillCounts(const std::string& root = "/sys/fs/cgroup");

// memory.max of `cgroup` below `root` in bytes; 0 when it has none ("max").
uint64_t ReadMemoryMax(const std::string& cgroup, const std::string& root = "/sys/fs/cgroup");

}  // namespace cove::agent
