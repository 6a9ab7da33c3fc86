#include "daemon/mount/host_watcher.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
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

uint32_t HostWatcher::MaskOf(const Watch& w) {
  uint32_t mask = 0;
  if (w.wanted) mask |= kDirMask;
  if (w.root) mask |= kRootMask;
  if (!w.child_roots.empty()) mask |= IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR;
  return mask;
}

int HostWatcher::WatchPath(const std::string& path, const std::function<void(Watch&)>& role) {
  // IN_MASK_ADD: if the inode is watched already for another role, keep
  // what that one asked for; Remask then sets exactly the union.
  const int wd = ::inotify_add_watch(fd_, path.c_str(), IN_MASK_ADD | IN_ONLYDIR | IN_EXCL_UNLINK);
  if (wd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      spdlog::warn("cannot watch {} for the guest: {}", path, std::strerror(errno));
    }
    return -1;
  }
  Watch& w = watches_[wd];
  if (w.path.empty()) w.path = path;
  role(w);
  Remask(wd);
  return wd;
}

void HostWatcher::Remask(int wd) {
  auto it = watches_.find(wd);
  if (it == watches_.end()) return;
  const uint32_t mask = MaskOf(it->second);
  if (mask == 0) return DropWatch(wd);
  if (::inotify_add_watch(fd_, it->second.path.c_str(), mask) != wd) {
    // Replaced by another directory at that path meanwhile: let it go.
    DropWatch(wd);
  }
}

void HostWatcher::AddMount(const std::string& tag, const std::string& host_root) {
  if (fd_ < 0) return;
  mounts_[tag].host_root = host_root;
  WatchPath(host_root, [&](Watch& w) {
    w.tag = tag;
    w.rel = "";
    w.root = true;
  });
  const size_t slash = host_root.rfind('/');
  if (slash == std::string::npos || host_root == "/") return;
  const std::string parent = slash == 0 ? "/" : host_root.substr(0, slash);
  const std::string name = host_root.substr(slash + 1);
  WatchPath(parent, [&](Watch& w) { w.child_roots.push_back({tag, name}); });
}

void HostWatcher::DropWatch(int wd) {
  auto it = watches_.find(wd);
  if (it == watches_.end()) return;
  ::inotify_rm_watch(fd_, wd);
  watches_.erase(it);
}

void HostWatcher::SetWatched(const std::string& tag, const std::vector<std::string>& dirs) {
  auto mount = mounts_.find(tag);
  if (fd_ < 0 || mount == mounts_.end()) return;
  Mount& m = mount->second;
  m.wanted = std::set<std::string>(dirs.begin(), dirs.end());
  std::vector<int> changed;
  std::set<std::string> have;
  for (auto& [wd, w] : watches_) {
    if (w.tag != tag || !w.wanted) continue;
    if (m.wanted.count(w.rel)) {
      have.insert(w.rel);
    } else {
      w.wanted = false;
      changed.push_back(wd);
    }
  }
  for (int wd : changed) Remask(wd);
  size_t count = watches_.size();
  for (const std::string& rel : m.wanted) {
    if (have.count(rel)) continue;
    if (count >= kMaxWatches) {
      spdlog::warn("guest watches more than {} directories; host changes reach only the first",
                   kMaxWatches);
      break;
    }
    WatchPath(rel.empty() ? m.host_root : m.host_root + "/" + rel, [&](Watch& w) {
      w.tag = tag;
      w.rel = rel;
      w.wanted = true;
    });
    count = watches_.size();
  }
}

size_t HostWatcher::watched(const std::string& tag) const {
  size_t n = 0;
  for (const auto& [wd, w] : watches_) n += w.tag == tag && w.wanted;
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
      if (w.wanted) Queue(w.tag, w.rel, cove::agent::v1::HostChanges::Change::WRITTEN);
    }
    return;
  }
  auto it = watches_.find(wd);
  if (it == watches_.end()) return;
  const Watch w = it->second;
  if (mask & IN_IGNORED) {
    watches_.erase(it);
    return;
  }
  if (w.root && (mask & (IN_DELETE_SELF | IN_MOVE_SELF))) {
    if (gone_) gone_(w.tag);
    return;
  }
  if (mask & (IN_DELETE | IN_MOVED_FROM)) {
    for (const auto& [tag, child] : w.child_roots) {
      if (child == name && gone_) gone_(tag);
    }
  }
  if (!w.wanted) return;
  const std::string path = Join(w.rel, name);
  if ((mask & (IN_ATTRIB | IN_CLOSE_WRITE)) && RecentlySent(w.tag, path, SteadyNowMs())) return;
  Queue(w.tag, path,
        (mask & (IN_DELETE | IN_MOVED_FROM)) ? cove::agent::v1::HostChanges::Change::REMOVED
                                             : cove::agent::v1::HostChanges::Change::WRITTEN);
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
