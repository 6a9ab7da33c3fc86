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

// Per cgroup ("/docker/ID"), a balance: what its counter rose by, less the
// kills the log told for it or below it. The counter rises just before the
// log line is written, so a balance above zero is a missed kill only when it
// is still there at the next check. Pure.
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
    uint64_t last = 0;
    int64_t balance = 0;
    int checks_off = 0;  // checks in a row with a balance other than zero
  };
  std::map<std::string, Entry> entries_;
  int64_t unplaced_ = 0;  // kills told without their cgroup, not yet matched
};

// memory.events' oom_kill of every cgroup one and two levels below `root`
// (as "/NAME" and "/NAME/CHILD"), at most MissedKills::kMaxCgroups of them.
std::map<std::string, uint64_t> ReadOomKillCounts(const std::string& root = "/sys/fs/cgroup");

// memory.max of `cgroup` below `root` in bytes; 0 when it has none ("max").
uint64_t ReadMemoryMax(const std::string& cgroup, const std::string& root = "/sys/fs/cgroup");

}  // namespace cove::agent
