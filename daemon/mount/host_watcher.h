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
  // One inotify watch: a directory the guest watches, a mount's root (for
  // its removal), the parent of mount roots (rmdir of a directory another
  // process holds open, like virtiofsd does its root, tells only its
  // parent), or several of these at once: inotify has one watch per inode.
  struct Watch {
    std::string path;  // on the host
    std::string tag;   // of the mount it is in, when root or wanted
    std::string rel;   // relative to that mount's root, "" for the root
    bool root = false;
    bool wanted = false;                                           // the guest watches it
    std::vector<std::pair<std::string, std::string>> child_roots;  // (tag, name)
  };
  struct Mount {
    std::string host_root;
    std::set<std::string> wanted;
  };
  static uint32_t MaskOf(const Watch& w);
  // Adds `path` (or finds its existing watch) and lets `role` mark it.
  int WatchPath(const std::string& path, const std::function<void(Watch&)>& role);
  // Sets the kernel's mask to what the watch's roles need.
  void Remask(int wd);
  void OnReadable();
  void OnEvent(int wd, uint32_t mask, const std::string& name);
  void Queue(const std::string& tag, const std::string& path,
             cove::agent::v1::HostChanges::Change::Kind kind);
  void FlushNow();
  void DropWatch(int wd);
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
