// Host directory mounts in the guest (HostHello.mounts in agent.proto):
// mounting each share the host lists, finding which directories inside them
// guest programs watch with inotify (WatchedDirs), and making the changes
// the host reports (HostChanges) visible to those watchers.
//
// Mounting is synchronous (milliseconds) and happens on every HostHello for
// the mounts not mounted yet; mounts are never taken away during a boot.
// Threading: the agent's loop thread only; time is passed in.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/mounts/host_changes.h"
#include "guest/agent/mounts/mount_types.h"
#include "guest/agent/mounts/watched_dirs.h"

namespace cove::agent {

// mount(2) data for 9p, in one place because each option matters:
//   trans=virtio      the share arrives on a virtio-9p PCI device, found by
//                     its mount_tag (the mount's source)
//   version=9p2000.L  the Linux dialect: POSIX modes, owners, symlinks, hard
//                     links, xattrs and locks, as Linux programs expect
//   msize=524288      512 KiB messages: the default (8 KiB before Linux 5.15,
//                     128 KiB after) makes big reads and writes many round
//                     trips; the kernel lowers it to what the virtio transport
//                     allows (and says so in dmesg)
//   cache=mmap        no page cache for file data, so what the host writes is
//                     read at once, yet mmap(2) works (compilers, git,
//                     sqlite); metadata is not cached either
//   access=client     the guest kernel checks permissions with the calling
//                     process's uid and the files' modes, as on a local disk
inline constexpr char kNinePMountOptions[] =
    "trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client";

// Where the image keeps the modules of the on-demand file systems:
// kOnDemandModuleLists/FSTYPE names the modules in load order, one a line,
// each in kModuleDir/NAME.ko (guest/image/build-image).
inline constexpr char kModuleDir[] = "/lib/modules";
inline constexpr char kOnDemandModuleLists[] = "/lib/modules/on-demand";

// One line of /proc/self/mountinfo, the fields the agent needs.
struct MountInfoEntry {
  unsigned major = 0;
  unsigned minor = 0;
  std::string mount_point;  // unescaped (\040 is a space)
  std::string fstype;
  std::string source;  // unescaped
};
std::vector<MountInfoEntry> ParseMountInfo(std::string_view text);
// The topmost mount at `path` of `fstype` whose source is `tag`, if any.
std::optional<MountInfoEntry> FindMount(const std::vector<MountInfoEntry>& mounts,
                                        const std::string& path, const std::string& fstype,
                                        const std::string& tag);

// The module names of an on-demand list; blank lines and # comments skipped,
// names with a '/' (not a plain module name) dropped.
std::vector<std::string> ParseModuleList(std::string_view text);

// What a person can act on when mount(2) failed with `err`; `fs_known`: the
// file system type is in /proc/filesystems.
std::string DescribeMountError(FsType type, const std::string& tag, const std::string& path,
                               int err, bool fs_known);

struct MountRequest {
  std::string tag;
  std::string guest_path;  // absolute
  FsType type = FsType::kVirtiofs;
  bool read_only = false;
};

struct MountResult {
  bool mounted = false;
  bool newly_mounted = false;
  std::string error;  // when not mounted
  CoveMount mount;    // when mounted
};

// Mounts `request` unless it is mounted already: loads the type's modules if
// the kernel lacks the type, creates the mount point (mkdir -p, 0755), and
// calls mount(2). Blocks for as long as mount(2) takes.
MountResult EnsureMounted(const MountRequest& request);

// Everything about cove mounts the agent's loop drives.
class CoveMounts {
 public:
  // Replays done per loop turn, so a big batch cannot hold up the loop;
  // changes waiting beyond kMaxPendingChanges are dropped (logged).
  static constexpr size_t kChangesPerTurn = 256;
  static constexpr size_t kMaxPendingChanges = 16384;
  // While a tree walk (9p) has more to read, it goes on this often, between
  // scans.
  static constexpr int64_t kWalkStepGapMs = 1000;

  // Mounts each of `wanted` that is not mounted yet, in order, and returns
  // a status for each, in the same order.
  std::vector<v1::MountStatus> Apply(const std::vector<v1::GuestMount>& wanted);

  // Process events (from the listener watcher's proc connector): programs
  // start watching soon after they start.
  void OnProcessEvents(int64_t now_ms) { schedule_.OnProcessEvent(now_ms); }

  // The fd to poll for guest writes now, or -1; when it is readable, call
  // OnGuestWrites.
  int PollFd(int64_t now_ms) { return writes_.PollFd(now_ms); }
  void OnGuestWrites(int64_t now_ms) { writes_.Drain(echo_, now_ms); }
  // When Tick or TakeWatchedDirs next have something to do; INT64_MAX when
  // there are no cove mounts.
  int64_t NextDueMs() const;

  // The WatchedDirs to send: scans when due (or `force`) and returns the
  // tags whose set changed since last sent (every tag with `force`, as at the
  // start of a session).
  std::vector<v1::WatchedDirs> TakeWatchedDirs(int64_t now_ms, bool force);

  // Queues the host's changes; Tick replays them.
  void OnHostChanges(const v1::HostChanges& changes);
  void Tick(int64_t now_ms);

 private:
  const CoveMount* FindByTag(const std::string& tag) const;
  void Remember(const CoveMount& mount);

  std::vector<CoveMount> mounts_;
  bool rescan_ = false;  // a mount was added: scan at the next chance
  int64_t walk_due_ms_ = INT64_MAX;
  WatchedDirFinder finder_;
  ScanSchedule schedule_;
  std::map<std::string, std::vector<std::string>> sent_dirs_;  // by tag
  GuestWrites writes_;
  EchoFilter echo_;
  std::deque<v1::HostChanges::Change> pending_;
  bool dropped_logged_ = false;
  std::set<std::string> failed_logged_;  // tags whose replay failed, said once
};

}  // namespace cove::agent
