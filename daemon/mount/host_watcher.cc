#include "daemon/mount/host_watcher.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

using Kind = cove::agent::v1::HostChanges::Change::Kind;

// What a guest watcher could care about. IN_OPEN and IN_ACCESS happen on
// every read and tell nothing.
constexpr uint32_t kDirMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_MOVED_FROM |
                              IN_MOVED_TO | IN_DELETE | IN_ONLYDIR | IN_EXCL_UNLINK;
constexpr uint32_t kRootMask = IN_DELETE_SELF | IN_MOVE_SELF;

std::string Join(const std::string& rel, const std::string& name) {
  if (rel.empty()) return name;
  if (name.empty()) return rel;
  return rel + "/" + name;
}

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace

HostWatcher::HostWatcher(EventLoop& loop, Flush flush, Gone gone)
    : loop_(loop), flush_(std::move(flush)), gone_(std::move(gone)), flush_timer_(loop) {}

HostWatcher::~HostWatcher() {
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  }
  if (fd_ >= 0) ::close(fd_);
}

absl::Status HostWatcher::Start() {
  fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "inotify_init1: ", std::strerror(errno), " (see /proc/sys/fs/inotify/max_user_instances)"));
  }
  poll_ = new uv_poll_t;
  uv_poll_init(loop_.uv(), poll_, fd_);
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE,
                [](uv_poll_t* h, int, int) { static_cast<HostWatcher*>(h->data)->OnReadable(); });
  return absl::OkStatus();
}

int HostWatcher::AddWatch(int dir_fd, const std::string& path, uint32_t mask) {
  // inotify_add_watch takes a path: the fd's magic link names exactly the
  // directory opened, whatever its path says now.
  const std::string target = dir_fd >= 0 ? "/proc/self/fd/" + std::to_string(dir_fd) : path;
  const int wd = ::inotify_add_watch(fd_, target.c_str(), mask | IN_MASK_ADD | IN_ONLYDIR);
  if (wd < 0 && errno != ENOENT && errno != ENOTDIR) {
    spdlog::warn("cannot watch {} for the guest: {}", path, std::strerror(errno));
  }
  return wd;
}

int HostWatcher::OpenBeneath(const Mount& mount, const std::string& rel) {
  const int root = ::open(mount.host_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return -1;
  if (rel.empty()) return root;
  struct open_how how {};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const int fd = static_cast<int>(::syscall(SYS_openat2, root, rel.c_str(), &how, sizeof(how)));
  ::close(root);
  return fd;
}

void HostWatcher::AddMount(const std::string& tag, const std::string& host_root) {
  if (fd_ < 0) return;
  mounts_[tag].host_root = host_root;
  // The root's own path was resolved by coved (at create), not by the guest.
  const int wd = AddWatch(-1, host_root, kRootMask);
  if (wd >= 0) watches_[wd].dirs.push_back({.tag = tag, .rel = "", .root = true});
  const size_t slash = host_root.rfind('/');
  if (slash == std::string::npos || host_root == "/") return;
  const std::string parent = slash == 0 ? "/" : host_root.substr(0, slash);
  const int pwd = AddWatch(-1, parent, IN_DELETE | IN_MOVED_FROM);
  if (pwd >= 0) watches_[pwd].child_roots.push_back({tag, host_root.substr(slash + 1)});
}

void HostWatcher::DropRoleless(int wd) {
  auto it = watches_.find(wd);
  if (it == watches_.end() || !it->second.empty()) return;
  ::inotify_rm_watch(fd_, wd);
  watches_.erase(it);
}

void HostWatcher::SetWatched(const std::string& tag, const std::vector<std::string>& dirs) {
  auto mount = mounts_.find(tag);
  if (fd_ < 0 || mount == mounts_.end()) return;
  Mount& m = mount->second;
  m.wanted = std::set<std::string>(dirs.begin(), dirs.end());
  std::set<std::string> have;
  std::vector<int> maybe_idle;
  for (auto& [wd, w] : watches_) {
    for (auto& role : w.dirs) {
      if (role.tag != tag || !role.wanted) continue;
      if (m.wanted.count(role.rel)) {
        have.insert(role.rel);
      } else {
        role.wanted = false;  // its events are ignored from now on
      }
    }
    std::erase_if(w.dirs, [](const DirRole& r) { return !r.root && !r.wanted; });
    maybe_idle.push_back(wd);
  }
  for (int wd : maybe_idle) DropRoleless(wd);
  for (const std::string& rel : m.wanted) {
    if (have.count(rel)) continue;
    if (watches_.size() >= kMaxWatches) {
      spdlog::warn("guest watches more than {} directories; host changes reach only the first",
                   kMaxWatches);
      break;
    }
    const int dir = OpenBeneath(m, rel);
    if (dir < 0) continue;  // gone, not a directory, or not inside the mount
    const int wd = AddWatch(dir, m.host_root + "/" + rel, kDirMask);
    ::close(dir);
    if (wd < 0) continue;
    Watch& w = watches_[wd];
    auto same = std::find_if(w.dirs.begin(), w.dirs.end(),
                             [&](const DirRole& r) { return r.tag == tag && r.rel == rel; });
    if (same != w.dirs.end()) {
      same->wanted = true;
    } else {
      w.dirs.push_back({.tag = tag, .rel = rel, .root = false, .wanted = true});
    }
  }
}

size_t HostWatcher::watched(const std::string& tag) const {
  size_t n = 0;
  for (const auto& [wd, w] : watches_) {
    for (const DirRole& r : w.dirs) n += r.tag == tag && r.wanted;
  }
  return n;
}

void HostWatcher::OnReadable() {
  alignas(struct inotify_event) char buf[64 * 1024];
  for (;;) {
    const ssize_t got = ::read(fd_, buf, sizeof(buf));
    if (got <= 0) return;  // EAGAIN: drained
    for (char* p = buf; p < buf + got;) {
      const auto* e = reinterpret_cast<const struct inotify_event*>(p);
      OnEvent(e->wd, e->mask, e->len > 0 ? std::string(e->name) : std::string());
      p += sizeof(struct inotify_event) + e->len;
    }
  }
}

void HostWatcher::OnEvent(int wd, uint32_t mask, const std::string& name) {
  if (mask & IN_Q_OVERFLOW) {
    // Events were lost: every watched directory may have changed.
    for (const auto& [w_wd, w] : watches_) {
      for (const DirRole& r : w.dirs) {
        if (r.wanted) Queue(r.tag, r.rel, cove::agent::v1::HostChanges::Change::WRITTEN);
      }
    }
    return;
  }
  auto it = watches_.find(wd);
  if (it == watches_.end()) return;
  if (mask & IN_IGNORED) {  // the kernel dropped the watch (the directory went)
    watches_.erase(it);
    return;
  }
  const Watch w = it->second;  // callbacks below may change watches_
  if (mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
    for (const DirRole& r : w.dirs) {
      if (r.root && gone_) gone_(r.tag);
    }
  }
  if (mask & (IN_DELETE | IN_MOVED_FROM)) {
    for (const auto& [tag, child] : w.child_roots) {
      if (child == name && gone_) gone_(tag);
    }
  }
  // Only what the guest watches; the other bits are there for other roles.
  if (!(mask & kDirMask & ~(IN_ONLYDIR | IN_EXCL_UNLINK))) return;
  const uint64_t now = SteadyNowMs();
  for (const DirRole& r : w.dirs) {
    if (!r.wanted) continue;
    const std::string path = Join(r.rel, name);
    if ((mask & (IN_ATTRIB | IN_CLOSE_WRITE)) && RecentlySent(r.tag, path, now)) continue;
    Queue(r.tag, path,
          (mask & (IN_DELETE | IN_MOVED_FROM)) ? cove::agent::v1::HostChanges::Change::REMOVED
                                               : cove::agent::v1::HostChanges::Change::WRITTEN);
  }
}

bool HostWatcher::RecentlySent(const std::string& tag, const std::string& path,
                               uint64_t now) const {
  auto it = sent_.find({tag, path});
  return it != sent_.end() && now - it->second < kEchoMs;
}

void HostWatcher::Queue(const std::string& tag, const std::string& path, Kind kind) {
  pending_[{tag, path}] = kind;
  if (!flush_timer_.active()) flush_timer_.Start(kCoalesceMs, [this]() { FlushNow(); });
}

void HostWatcher::FlushNow() {
  if (pending_.empty()) return;
  const uint64_t now = SteadyNowMs();
  std::erase_if(sent_, [now](const auto& kv) { return now - kv.second >= kEchoMs; });
  cove::agent::v1::HostChanges batch;
  auto add = [&](const std::string& tag, const std::string& path, Kind kind) {
    auto* c = batch.add_changes();
    c->set_tag(tag);
    c->set_path(path);
    c->set_kind(kind);
    // The replay touches the path, or for a removal its directory.
    sent_[{tag, kind == cove::agent::v1::HostChanges::Change::REMOVED ? Parent(path) : path}] = now;
  };
  if (pending_.size() <= kMaxBatch) {
    for (const auto& [key, kind] : pending_) add(key.first, key.second, kind);
  } else {
    // A burst (a checkout, a build): each directory with changes stands for
    // them, as a change of the directory itself.
    std::set<std::pair<std::string, std::string>> dirs;
    for (const auto& [key, kind] : pending_) dirs.insert({key.first, Parent(key.second)});
    size_t n = 0;
    for (const auto& [tag, dir] : dirs) {
      if (n++ == kMaxBatch) break;
      add(tag, dir, cove::agent::v1::HostChanges::Change::WRITTEN);
    }
    spdlog::debug("host changes: {} paths summarized as {} directories", pending_.size(),
                  std::min(dirs.size(), kMaxBatch));
  }
  pending_.clear();
  if (flush_) flush_(std::move(batch));
}

}  // namespace cove::daemon
