// Which directories inside cove mounts guest programs watch with inotify, so
// that the host watches the same ones (WatchedDirs) and tells the guest what
// changed there (HostChanges): a host directory shared over virtiofs or 9p
// sends no inotify events into the guest by itself.
//
// The kernel shows every inotify watch in /proc/PID/fdinfo/FD of the
// watching process: the inode number, its file system's device and, where
// the file system can encode one, a file handle. A handle is turned back
// into a path with open_by_handle_at(2) and readlink of /proc/self/fd/N,
// all without a round trip to the host (the watched inode is pinned in the
// guest). File systems that cannot decode handles (9p) are searched instead:
// a walk of the mount's tree matches inode numbers from readdir, under a time
// budget per scan and resumed by the next one. Results are remembered per
// inode, and a few are checked again each scan, so renamed directories are
// noticed.
//
// Threading: the agent's loop thread only; time is passed in.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "guest/agent/mounts/mount_types.h"

namespace cove::agent {

// One line of an inotify fd's fdinfo, e.g.
// "inotify wd:1 ino:3e8 sdev:2b mask:fce ignored_mask:0 fhandle-bytes:8
//  fhandle-type:1 f_handle:0102030405060708" (numbers in hex).
struct InotifyWatch {
  uint32_t wd = 0;
  uint64_t ino = 0;
  uint32_t sdev = 0;  // kernel encoding, see KernelDevFromUser
  uint32_t mask = 0;
  int handle_type = 0;
  std::string handle;  // the f_handle bytes; empty when none was printed
};
std::optional<InotifyWatch> ParseInotifyLine(std::string_view line);
// Every watch in the text of one fdinfo file.
std::vector<InotifyWatch> ParseInotifyFdinfo(std::string_view text);

// The watches of all processes but `skip_pid` (the agent has none; tests
// pass 0) on the file systems `devs`, one per (sdev, ino), at most `max`.
// Only processes whose /proc/PID/fd the caller may read are seen: all, as
// root.
std::vector<InotifyWatch> ListInotifyWatches(const std::set<uint32_t>& devs, size_t max,
                                             pid_t skip_pid = getpid());

// When to look for watched directories. Programs set up their watches soon
// after they start, so the scan follows process events: at kBurstOffsetsMs
// after the last one; otherwise every kIdleMs. A scan costs a readlink per
// open fd of every process, so scans never take more than 1/kMaxDutyDivisor
// of the time: the next waits at least kMaxDutyDivisor times as long as the
// last took.
class ScanSchedule {
 public:
  static constexpr int64_t kBurstOffsetsMs[] = {500, 1000, 2000, 4000, 8000};
  static constexpr int64_t kIdleMs = 10000;
  static constexpr int64_t kMaxDutyDivisor = 20;

  void OnProcessEvent(int64_t now_ms);
  int64_t NextDueMs() const;
  // A scan ran from `start_ms` to `end_ms`.
  void OnScanned(int64_t start_ms, int64_t end_ms);

 private:
  static constexpr size_t kBursts = std::size(kBurstOffsetsMs);
  int64_t event_ms_ = 0;
  size_t next_burst_ = kBursts;  // none pending
  int64_t last_scan_ms_ = 0;
  int64_t earliest_ms_ = 0;  // the duty-cycle bound
};

// Turns watched inodes into directories relative to their mount's root.
class WatchedDirFinder {
 public:
  static constexpr size_t kMaxDirsPerTag = 8192;
  static constexpr size_t kMaxWatches = 65536;  // over all mounts
  // Per scan: the tree walk for handle-less file systems, and the re-checks
  // of what is remembered.
  static constexpr int64_t kWalkBudgetMs = 100;
  static constexpr int64_t kRecheckBudgetMs = 10;
  // An inode the walk did not find is looked for again after this long.
  static constexpr int64_t kNotFoundRetryMs = 300000;

  // `use_handles` false: always walk (tests of the walk as root).
  explicit WatchedDirFinder(bool use_handles = true) : use_handles_(use_handles) {}

  // The watched directories of each mount, by tag: sorted, at most
  // kMaxDirsPerTag (the shallowest). A watched file counts as its directory:
  // the host learns of a file's changes by watching the directory it is in.
  std::map<std::string, std::vector<std::string>> Scan(const std::vector<CoveMount>& mounts,
                                                       int64_t now_ms);
  // Goes on with unfinished walks, with the watches the last Scan found.
  std::map<std::string, std::vector<std::string>> Continue(const std::vector<CoveMount>& mounts,
                                                           int64_t now_ms);
  // A walk has more to read: Continue soon.
  bool walking() const;
  // How watched inodes were found, for tests and diagnosis.
  struct Stats {
    size_t by_handle = 0;
    size_t by_walk = 0;
  };
  const Stats& stats() const { return stats_; }
  // The watched directories of one mount among `watches` (tests, Scan).
  std::vector<std::string> Resolve(const CoveMount& mount, const std::vector<InotifyWatch>& watches,
                                   int64_t now_ms);

 private:
  struct Known {
    std::string rel;  // of the watched inode; meaningful when `found`
    bool is_dir = false;
    bool found = false;
    bool by_handle = false;
    bool tried = false;  // the walk read the whole tree without finding it
    int64_t tried_ms = 0;
    int64_t first_wanted_ms = 0;
  };
  static Known NotFound(int64_t first_wanted_ms) {
    Known k;
    k.first_wanted_ms = first_wanted_ms;
    return k;
  }
  struct MountState {
    std::map<uint64_t, Known> known;     // by inode number
    std::deque<std::string> walk_queue;  // directories still to read
    bool walk_started = false;
    int64_t walk_started_ms = 0;
    uint64_t recheck_from = 0;  // inode number to go on from
    int handle_failures = 0;
    bool handles_work = false;
  };

  bool ByHandle(int root_fd, const CoveMount& mount, const InotifyWatch& watch, MountState& st,
                Known& out);
  bool StillThere(int root_fd, const CoveMount& mount, uint64_t ino, const InotifyWatch* watch,
                  MountState& state, Known& known);
  void Walk(int root_fd, MountState& state, const std::set<uint64_t>& wanted, int64_t now_ms);

  bool use_handles_;
  Stats stats_;
  std::vector<InotifyWatch> last_watches_;
  std::map<std::string, MountState> state_;  // by tag
  std::set<std::string> truncated_logged_;
};

}  // namespace cove::agent
