#include "guest/agent/mounts/host_changes.h"

#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "guest/agent/core/log.h"

namespace cove::agent {
namespace {

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

std::string BaseOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string InodeKey(uint64_t dev, uint64_t ino) {
  return "i:" + std::to_string(dev) + ":" + std::to_string(ino);
}

}  // namespace

void EchoFilter::Recent::Put(const std::string& key, int64_t now_ms, const FileStamp& stamp) {
  if (auto it = index_.find(key); it != index_.end()) {
    order_.erase(it->second);
    index_.erase(it);
  }
  order_.push_back(Entry{key, now_ms, stamp});
  index_[key] = std::prev(order_.end());
  while (!order_.empty() &&
         (order_.size() > kMaxEntries || now_ms - order_.front().at_ms > kWindowMs)) {
    index_.erase(order_.front().key);
    order_.pop_front();
  }
}

const EchoFilter::Entry* EchoFilter::Recent::Get(const std::string& key, int64_t now_ms) const {
  auto it = index_.find(key);
  if (it == index_.end() || now_ms - it->second->at_ms > kWindowMs) return nullptr;
  return &*it->second;
}

void EchoFilter::NoteGuestWrite(const std::string& path, uint64_t dev, uint64_t ino,
                                int64_t now_ms) {
  if (!path.empty()) {
    written_.Put("p:" + path, now_ms);
    written_.Put("d:" + DirOf(path), now_ms);
  }
  written_.Put(InodeKey(dev, ino), now_ms);
}

void EchoFilter::NoteReplay(const std::string& path, const FileStamp& stamp, int64_t now_ms) {
  replayed_.Put(path, now_ms, stamp);
}

bool EchoFilter::IsWrittenEcho(const std::string& path, const FileStamp& stamp,
                               int64_t now_ms) const {
  if (now_ms - overflow_ms_ <= kWindowMs) return true;
  if (written_.Get("p:" + path, now_ms) != nullptr) return true;
  if (written_.Get(InodeKey(stamp.dev, stamp.ino), now_ms) != nullptr) return true;
  const Entry* replay = replayed_.Get(path, now_ms);
  return replay != nullptr && replay->stamp == stamp;
}

bool EchoFilter::IsRemovedEcho(const std::string& path, int64_t now_ms) const {
  if (now_ms - overflow_ms_ <= kWindowMs) return true;
  return written_.Get("d:" + DirOf(path), now_ms) != nullptr;
}

bool GuestWrites::Watch(const std::string& path) {
  if (unavailable_) return false;
  if (watched_.count(path) != 0) return true;
  if (!fd_.valid()) {
    // O_NONBLOCK for the event fds: opening a FIFO must not wait for a peer.
    fd_ = UniqueFd(fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK,
                                 O_RDONLY | O_LARGEFILE | O_CLOEXEC | O_NONBLOCK));
    if (!fd_.valid()) {
      Log("no fanotify (%s): guest writes to host directories may reach guest watchers twice",
          std::strerror(errno));
      unavailable_ = true;
      return false;
    }
  }
  // The whole file system, not only this mount: containers write to it
  // through bind mounts of their own. A mount mark is the fallback.
  constexpr uint64_t kEvents = FAN_MODIFY | FAN_CLOSE_WRITE;
  if (fanotify_mark(fd_.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM, kEvents, AT_FDCWD,
                    path.c_str()) != 0 &&
      fanotify_mark(fd_.get(), FAN_MARK_ADD | FAN_MARK_MOUNT, kEvents, AT_FDCWD, path.c_str()) !=
          0) {
    Log("cannot watch guest writes to %s (%s): they may reach guest watchers twice", path.c_str(),
        std::strerror(errno));
    return false;
  }
  watched_.insert(path);
  return true;
}

int GuestWrites::PollFd(int64_t now_ms) {
  if (holding_ && now_ms >= hold_until_ms_) holding_ = false;
  return fd_.valid() && !holding_ ? fd_.get() : -1;
}

int64_t GuestWrites::NextDueMs() const { return holding_ ? hold_until_ms_ : INT64_MAX; }

void GuestWrites::Drain(EchoFilter& echo, int64_t now_ms) {
  if (!fd_.valid()) return;
  alignas(fanotify_event_metadata) static char buf[kEventBuffer];  // one thread
  bool any = false;
  while (true) {
    ssize_t n = read(fd_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: empty
    any = true;
    for (auto* m = reinterpret_cast<fanotify_event_metadata*>(buf); FAN_EVENT_OK(m, n);
         m = FAN_EVENT_NEXT(m, n)) {
      if (m->mask & FAN_Q_OVERFLOW) echo.NoteOverflow(now_ms);
      if (m->fd < 0) continue;
      UniqueFd file(m->fd);
      if (m->vers != FANOTIFY_METADATA_VERSION || m->pid == ignore_pid_) continue;
      std::string path;
      char link[PATH_MAX];
      const std::string proc = "/proc/self/fd/" + std::to_string(file.get());
      const ssize_t len = readlink(proc.c_str(), link, sizeof(link));
      if (len > 0 && len < static_cast<ssize_t>(sizeof(link))) path.assign(link, len);
      // Removed since (the inode still counts), or written through a mount
      // the agent cannot see (the path means nothing here).
      if (!path.starts_with("/") || path.ends_with(" (deleted)")) path.clear();
      struct statx sx {};
      if (statx(file.get(), "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &sx) != 0) continue;
      echo.NoteGuestWrite(path, makedev(sx.stx_dev_major, sx.stx_dev_minor), sx.stx_ino, now_ms);
    }
  }
  if (any) {
    holding_ = true;
    hold_until_ms_ = now_ms + kHoldMs;
  }
}

bool IsSafeRelativePath(std::string_view rel) {
  if (rel.empty() || rel.size() >= PATH_MAX || rel.front() == '/') return false;
  if (rel.find('\0') != std::string_view::npos) return false;
  size_t pos = 0;
  while (pos <= rel.size()) {
    size_t end = rel.find('/', pos);
    if (end == std::string_view::npos) end = rel.size();
    const std::string_view part = rel.substr(pos, end - pos);
    if (part.empty() || part == "." || part == "..") return false;
    pos = end + 1;
  }
  return true;
}

const char* ReplayResultName(ReplayResult result) {
  switch (result) {
    case ReplayResult::kReplayed:
      return "replayed";
    case ReplayResult::kEcho:
      return "echo";
    case ReplayResult::kRejected:
      return "rejected";
    case ReplayResult::kMissing:
      return "missing";
    case ReplayResult::kFailed:
      return "failed";
  }
  return "?";
}

ReplayResult ReplayChange(const CoveMount& mount, const std::string& rel, ChangeKind kind,
                          EchoFilter& echo, int64_t now_ms) {
  // "" is the mount's root (a change of the root directory itself).
  if (!(rel.empty() && kind == ChangeKind::kWritten) && !IsSafeRelativePath(rel)) {
    return ReplayResult::kRejected;
  }
  if (kind == ChangeKind::kRemoved && echo.IsRemovedEcho(mount.path + "/" + rel, now_ms)) {
    return ReplayResult::kEcho;
  }
  // What to touch: the file itself, or the directory a removed entry was in
  // (the mount's root: by its absolute path, from outside the mount).
  const std::string target = kind == ChangeKind::kWritten ? rel : DirOf(rel);
  UniqueFd dir;
  int dirfd = AT_FDCWD;
  std::string name = mount.path;
  if (!target.empty()) {
    UniqueFd root(open(mount.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root.valid()) return ReplayResult::kFailed;
    dir = UniqueFd(OpenBeneath(root.get(), DirOf(target), O_PATH | O_DIRECTORY));
    if (!dir.valid()) {
      return errno == ENOENT || errno == ENOTDIR ? ReplayResult::kMissing : ReplayResult::kFailed;
    }
    dirfd = dir.get();
    name = BaseOf(target);
  }
  // Fresh from the host, never from the guest's attribute cache: the times
  // are written back.
  struct statx sx {};
  if (statx(dirfd, name.c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC,
            STATX_TYPE | STATX_INO | STATX_SIZE | STATX_ATIME | STATX_MTIME, &sx) != 0) {
    return errno == ENOENT || errno == ENOTDIR ? ReplayResult::kMissing : ReplayResult::kFailed;
  }
  // A removal's directory on the host is one here too, or there is nothing
  // (no directory's watchers) to tell.
  if (kind == ChangeKind::kRemoved && !S_ISDIR(sx.stx_mode)) return ReplayResult::kMissing;
  const FileStamp stamp{makedev(sx.stx_dev_major, sx.stx_dev_minor), sx.stx_ino,
                        sx.stx_mtime.tv_sec * 1000000000LL + sx.stx_mtime.tv_nsec, sx.stx_size};
  const std::string path = target.empty() ? mount.path : mount.path + "/" + target;
  if (kind == ChangeKind::kWritten && echo.IsWrittenEcho(path, stamp, now_ms)) {
    return ReplayResult::kEcho;
  }
  // Both times, to what they are: the kernel says IN_ATTRIB only when both
  // are set (atime alone is IN_ACCESS, mtime alone IN_MODIFY), and the file
  // keeps its times. A host write landing between the statx and this (a
  // window of microseconds) would have its mtime set back.
  const timespec times[2] = {{sx.stx_atime.tv_sec, sx.stx_atime.tv_nsec},
                             {sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec}};
  bool seen = utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0;  // IN_ATTRIB
  if (kind == ChangeKind::kWritten && S_ISREG(sx.stx_mode)) {
    // IN_OPEN and IN_CLOSE_WRITE; no O_TRUNC, nothing written.
    const int fd =
        openat(dirfd, name.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      close(fd);
      seen = true;
    }
  }
  // The host sees these touches too and may report them back.
  echo.NoteReplay(path, stamp, now_ms);
  return seen ? ReplayResult::kReplayed : ReplayResult::kFailed;
}

}  // namespace cove::agent
