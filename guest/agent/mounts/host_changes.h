// Making the host's changes visible to guest inotify watchers (HostChanges),
// and not repeating the guest's own.
//
// The replay generates the events with system calls that change nothing: a
// changed file has its times set to what they are (IN_ATTRIB) and is opened
// for writing and closed (IN_OPEN, IN_CLOSE_WRITE); a removed entry's
// directory has its times set (IN_ATTRIB on the directory). The times are
// read with AT_STATX_FORCE_SYNC, fresh from the host: times from the guest's
// attribute cache could be older than the host's and would set the host
// file's mtime back.
//
// The host reports every change it sees in a watched directory, the guest's
// own writes through the mount and the replay's own opens included. Those
// echoes are recognised (EchoFilter) so a program that writes into a
// directory it watches is not woken a second time, in a loop.
//
// Threading: the agent's loop thread only; time is passed in.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <list>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "guest/agent/core/unique_fd.h"
#include "guest/agent/mounts/mount_types.h"

namespace cove::agent {

// What tells one version of a file from the next: a write changes the mtime
// or the size, a rename into place the inode.
struct FileStamp {
  uint64_t dev = 0;  // glibc dev_t encoding
  uint64_t ino = 0;
  int64_t mtime_ns = 0;
  uint64_t size = 0;
  bool operator==(const FileStamp&) const = default;
};

// Remembers, for kWindowMs, what the guest wrote and what the replay
// touched, at most kMaxEntries of each kind of key (the oldest go first).
class EchoFilter {
 public:
  static constexpr int64_t kWindowMs = 2000;
  static constexpr size_t kMaxEntries = 4096;

  // A guest program wrote the file `path` (absolute; empty when it is not
  // reachable from the agent's root, e.g. written through a container's bind
  // mount), inode `ino` on `dev`.
  void NoteGuestWrite(const std::string& path, uint64_t dev, uint64_t ino, int64_t now_ms);
  // The kernel dropped write events: any write may have been one.
  void NoteOverflow(int64_t now_ms) { overflow_ms_ = now_ms; }
  // The replay touched `path`, which then was `stamp`.
  void NoteReplay(const std::string& path, const FileStamp& stamp, int64_t now_ms);

  // A WRITTEN change of `path`, now `stamp`, is an echo: the guest wrote that
  // path or that inode (renamed into place since) within the window, or the
  // replay touched it and it has not changed since.
  bool IsWrittenEcho(const std::string& path, const FileStamp& stamp, int64_t now_ms) const;
  // A REMOVED change of `path` is taken for an echo when the guest wrote
  // into its directory within the window: a program saving atomically
  // (write a temporary file, rename it over the old one) makes the host see
  // the temporary name go, and guest watchers saw that rename already.
  bool IsRemovedEcho(const std::string& path, int64_t now_ms) const;

 private:
  struct Entry {
    std::string key;
    int64_t at_ms = 0;
    FileStamp stamp;  // replays only
  };
  // Most recent last, so the oldest are at the front to be dropped.
  class Recent {
   public:
    void Put(const std::string& key, int64_t now_ms, const FileStamp& stamp = {});
    const Entry* Get(const std::string& key, int64_t now_ms) const;

   private:
    std::list<Entry> order_;
    std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  };

  Recent written_;   // "p:PATH", "i:DEV:INO", "d:DIR" of guest writes
  Recent replayed_;  // PATH of the replay's touches, with the stamp then
  int64_t overflow_ms_ = INT64_MIN / 2;
};

// The guest's own writes to cove mounts, from fanotify (FAN_MODIFY and
// FAN_CLOSE_WRITE on each mount's file system), for the EchoFilter. Without
// fanotify (no CONFIG_FANOTIFY, no CAP_SYS_ADMIN) the agent goes on without
// echo suppression of guest writes, said once.
class GuestWrites {
 public:
  // After reading events, the fd is left out of the poll this long, so a
  // burst of writes to one file merges into one event in the kernel's queue
  // (each event read costs an open of that file). Read at once, whatever
  // the hold, before host changes are replayed.
  static constexpr int64_t kHoldMs = 200;
  static constexpr size_t kEventBuffer = size_t{64} * 1024;

  // Events of `ignore_pid` (the agent, whose replay opens files for
  // writing) are not guest writes.
  explicit GuestWrites(pid_t ignore_pid = getpid()) : ignore_pid_(ignore_pid) {}

  // Watches the file system mounted at `path` (once per path). False when
  // fanotify is unavailable.
  bool Watch(const std::string& path);
  // The fd to poll now, or -1 (none, or holding).
  int PollFd(int64_t now_ms);
  // When a hold ends after events were read; INT64_MAX otherwise.
  int64_t NextDueMs() const;
  // Reads every queued event into `echo`.
  void Drain(EchoFilter& echo, int64_t now_ms);

 private:
  UniqueFd fd_;
  bool unavailable_ = false;
  pid_t ignore_pid_;
  int64_t hold_until_ms_ = 0;
  bool holding_ = false;
  std::set<std::string> watched_;
};

// Relative, inside the mount: not empty, not absolute, no "..", no NUL,
// shorter than PATH_MAX.
bool IsSafeRelativePath(std::string_view rel);

enum class ChangeKind { kWritten, kRemoved };
enum class ReplayResult {
  kReplayed,
  kEcho,      // the guest's own write (or the replay's), not repeated
  kRejected,  // an unsafe path
  kMissing,   // no longer there (a REMOVED change follows)
  kFailed,    // e.g. EROFS: nothing a watcher could see was done
};
const char* ReplayResultName(ReplayResult result);

// Replays one change of `rel` in `mount`; see the top of this file.
ReplayResult ReplayChange(const CoveMount& mount, const std::string& rel, ChangeKind kind,
                          EchoFilter& echo, int64_t now_ms);

}  // namespace cove::agent
