// Host changes in mounted directories, for the guest's inotify watchers. A
// guest kernel sees only the changes made through it, so a file the user
// saves on the host would never wake a watcher in the guest (a dev server's
// reload, a test runner). The agent reports which directories guest programs
// watch (WatchedDirs); this watches the same ones on the host with inotify,
// coalesces what happens in them, and hands batches to the agent
// (HostChanges), which makes them visible in the guest.
//
// Costs only what the guest watches: one host watch per watched guest
// directory, nothing while nothing changes.
//
// Threading: loop thread only; `flush` and `gone` run on it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "cove/agent/v1/agent.pb.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class HostWatcher {
 public:
  // A batch for the agent.
  using Flush = std::function<void(cove::agent::v1::HostChanges changes)>;
  // A mount's host directory was removed or moved away.
  using Gone = std::function<void(const std::string& tag)>;

  // How long changes gather before they go out: a save is several events,
  // a checkout thousands; the guest sees them in one batch.
  static constexpr uint64_t kCoalesceMs = 50;
  // At most this many paths a batch; beyond it, each changed directory
  // stands for its entries.
  static constexpr size_t kMaxBatch = 4096;
  // Host watches per machine, whatever the guest asks for.
  static constexpr size_t kMaxWatches = 8192;
  // Our own replay in the guest (times set, an open for writing) comes back
  // as IN_ATTRIB and IN_CLOSE_WRITE: ignored for a path this long after it
  // was sent.
  static constexpr uint64_t kEchoMs = 1000;

  HostWatcher(EventLoop& loop, Flush flush, Gone gone);
  ~HostWatcher();
  HostWatcher(const HostWatcher&) = delete;
  HostWatcher& operator=(const HostWatcher&) = delete;

  absl::Status Start();
  // Watches a mount's root for being removed or moved (and, once the guest
  // watches it, for changes in it).
  void AddMount(const std::string& tag, const std::string& host_root);
  // The directories (relative to the mount's root) that guest programs watch
  // now; replaces the previous set for `tag`. Missing ones are skipped.
  void SetWatched(const std::string& tag, const std::vector<std::string>& dirs);
  size_t watched(const std::string& tag) const;

 private:
  // What one inotify watch is for. inotify has one watch per inode, so one
  // watch may be several of these at once (a mount's root that the guest
  // watches and that is the parent of another mount's root).
  struct DirRole {  // a directory of a mount: its root, or one the guest watches
    std::string tag;
    std::string rel;  // relative to the mount's root, "" for the root
    bool root = false;
    bool wanted = false;
  };
  struct Watch {
    std::vector<DirRole> dirs;
    // Mount roots in this directory, by (tag, name): an rmdir of a directory
    // that another process holds open (virtiofsd does its root) tells only
    // its parent.
    std::vector<std::pair<std::string, std::string>> child_roots;
    bool empty() const { return dirs.empty() && child_roots.empty(); }
  };
  struct Mount {
    std::string host_root;
    std::set<std::string> wanted;
  };
  // Adds bits to the watch of the directory at `path` (opened by the caller,
  // as an O_PATH fd, or -1 to open `path` itself); the mask only ever grows
  // (IN_MASK_ADD), and events are sorted by role here. -1 if it cannot.
  int AddWatch(int dir_fd, const std::string& path, uint32_t mask);
  // Opens `rel` below the mount's root, following no symlink and never
  // leaving the root (a guest names these directories), as O_PATH.
  int OpenBeneath(const Mount& mount, const std::string& rel);
  void DropRoleless(int wd);
  void OnReadable();
  void OnEvent(int wd, uint32_t mask, const std::string& name);
  void Queue(const std::string& tag, const std::string& path,
             cove::agent::v1::HostChanges::Change::Kind kind);
  void FlushNow();
  bool RecentlySent(const std::string& tag, const std::string& path, uint64_t now) const;

  EventLoop& loop_;
  Flush flush_;
  Gone gone_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;  // freed in its close callback
  Timer flush_timer_;
  std::map<std::string, Mount> mounts_;  // by tag
  std::map<int, Watch> watches_;         // by inotify wd
  std::map<std::pair<std::string, std::string>, cove::agent::v1::HostChanges::Change::Kind>
      pending_;  // (tag, path) -> what happened last
  std::map<std::pair<std::string, std::string>, uint64_t> sent_;  // -> when, for echoes
};

}  // namespace cove::daemon
