#include "guest/agent/mounts/watched_dirs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"
#include "guest/agent/core/unique_fd.h"

namespace cove::agent {
namespace {

// One fdinfo line is ~130 bytes: this is some 60,000 watches of one fd.
constexpr size_t kMaxFdinfo = size_t{8} << 20;
constexpr char kInotifyLink[] = "anon_inode:inotify";
// A file system that failed this many handles and decoded none cannot
// decode them (9p): it is walked from then on.
constexpr int kMaxHandleFailures = 16;
constexpr size_t kMaxWalkQueue = 100000;

int64_t MonotonicMs() { return ClockMs(CLOCK_MONOTONIC); }

template <typename T>
bool ParseHex(std::string_view text, T& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, 16);
  return ec == std::errc() && end == text.data() + text.size();
}

bool DecodeHex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    uint8_t byte = 0;
    if (!ParseHex(hex.substr(i, 2), byte)) return false;
    out += static_cast<char>(byte);
  }
  return true;
}

std::string ReadLink(const std::string& path) {
  char buf[PATH_MAX];
  const ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  return n <= 0 || n >= static_cast<ssize_t>(sizeof(buf)) ? "" : std::string(buf, n);
}

// `path` relative to the directory `base`, if it is inside it.
std::optional<std::string> RelativeTo(const std::string& base, const std::string& path) {
  if (path == base) return std::string();
  if (base == "/")
    return path.size() > 1 && path[0] == '/' ? path.substr(1) : std::optional<std::string>();
  if (path.size() > base.size() && path.compare(0, base.size(), base) == 0 &&
      path[base.size()] == '/') {
    return path.substr(base.size() + 1);
  }
  return std::nullopt;
}

std::string ParentOf(const std::string& rel) {
  const size_t slash = rel.rfind('/');
  return slash == std::string::npos ? "" : rel.substr(0, slash);
}

}  // namespace

std::optional<InotifyWatch> ParseInotifyLine(std::string_view line) {
  constexpr std::string_view kPrefix = "inotify ";
  if (!line.starts_with(kPrefix)) return std::nullopt;
  line.remove_prefix(kPrefix.size());
  InotifyWatch w;
  bool have_wd = false, have_ino = false, have_sdev = false;
  size_t handle_bytes = 0;
  std::string_view handle_hex;
  while (!line.empty()) {
    const size_t end = std::min(line.find(' '), line.size());
    const std::string_view token = line.substr(0, end);
    line.remove_prefix(std::min(end + 1, line.size()));
    const size_t colon = token.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = token.substr(0, colon), value = token.substr(colon + 1);
    if (key == "wd") have_wd = ParseHex(value, w.wd);
    if (key == "ino") have_ino = ParseHex(value, w.ino);
    if (key == "sdev") have_sdev = ParseHex(value, w.sdev);
    if (key == "mask") ParseHex(value, w.mask);
    if (key == "fhandle-bytes") ParseHex(value, handle_bytes);
    if (key == "fhandle-type") ParseHex(value, w.handle_type);
    if (key == "f_handle") handle_hex = value;
  }
  if (!have_wd || !have_ino || !have_sdev) return std::nullopt;
  if (!DecodeHex(handle_hex, w.handle) || w.handle.size() != handle_bytes) w.handle.clear();
  return w;
}

std::vector<InotifyWatch> ParseInotifyFdinfo(std::string_view text) {
  std::vector<InotifyWatch> watches;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    if (auto w = ParseInotifyLine(text.substr(pos, eol - pos))) watches.push_back(std::move(*w));
    pos = eol + 1;
  }
  return watches;
}

std::vector<InotifyWatch> ListInotifyWatches(const std::set<uint32_t>& devs, size_t max,
                                             pid_t skip_pid) {
  std::map<std::pair<uint32_t, uint64_t>, InotifyWatch> found;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return {};
  const std::string skip = std::to_string(skip_pid);
  while (dirent* p = readdir(proc)) {
    if (p->d_name[0] < '1' || p->d_name[0] > '9' || skip == p->d_name) continue;
    const std::string base = std::string("/proc/") + p->d_name;
    DIR* fds = opendir((base + "/fd").c_str());  // EACCES unless root: skipped
    if (fds == nullptr) continue;
    while (dirent* f = readdir(fds)) {
      if (f->d_name[0] == '.') continue;
      char link[sizeof(kInotifyLink) + 8];
      const ssize_t n = readlinkat(dirfd(fds), f->d_name, link, sizeof(link));
      if (n != sizeof(kInotifyLink) - 1 || std::memcmp(link, kInotifyLink, n) != 0) continue;
      const std::string info = ReadBoundedFile(base + "/fdinfo/" + f->d_name, kMaxFdinfo);
      for (InotifyWatch& w : ParseInotifyFdinfo(info)) {
        if (devs.count(w.sdev) == 0) continue;
        const auto key = std::make_pair(w.sdev, w.ino);
        auto it = found.find(key);
        if (it == found.end() && found.size() < max) {
          found.emplace(key, std::move(w));
        } else if (it != found.end() && it->second.handle.empty()) {
          it->second = std::move(w);
        }
      }
    }
    closedir(fds);
  }
  closedir(proc);
  std::vector<InotifyWatch> out;
  out.reserve(found.size());
  for (auto& [key, w] : found) out.push_back(std::move(w));
  return out;
}

void ScanSchedule::OnProcessEvent(int64_t now_ms) {
  event_ms_ = now_ms;
  next_burst_ = 0;
}

int64_t ScanSchedule::NextDueMs() const {
  int64_t due = last_scan_ms_ + kIdleMs;
  if (next_burst_ < kBursts) due = std::min(due, event_ms_ + kBurstOffsetsMs[next_burst_]);
  return std::max(due, earliest_ms_);
}

void ScanSchedule::OnScanned(int64_t start_ms, int64_t end_ms) {
  last_scan_ms_ = end_ms;
  earliest_ms_ = end_ms + (end_ms - start_ms) * kMaxDutyDivisor;
  while (next_burst_ < kBursts && event_ms_ + kBurstOffsetsMs[next_burst_] <= end_ms) {
    ++next_burst_;
  }
}

std::map<std::string, std::vector<std::string>> WatchedDirFinder::Scan(
    const std::vector<CoveMount>& mounts, int64_t now_ms) {
  std::set<uint32_t> devs;
  for (const CoveMount& m : mounts) devs.insert(m.kernel_dev);
  last_watches_ = ListInotifyWatches(devs, kMaxWatches);
  return Continue(mounts, now_ms);
}

std::map<std::string, std::vector<std::string>> WatchedDirFinder::Continue(
    const std::vector<CoveMount>& mounts, int64_t now_ms) {
  std::map<std::string, std::vector<std::string>> dirs;
  for (const CoveMount& m : mounts) dirs[m.tag] = Resolve(m, last_watches_, now_ms);
  return dirs;
}

bool WatchedDirFinder::walking() const {
  return std::any_of(state_.begin(), state_.end(),
                     [](const auto& entry) { return entry.second.walk_started; });
}

std::vector<std::string> WatchedDirFinder::Resolve(const CoveMount& mount,
                                                   const std::vector<InotifyWatch>& watches,
                                                   int64_t now_ms) {
  MountState& st = state_[mount.tag];
  // Not O_PATH: open_by_handle_at refuses an O_PATH mount fd (EBADF).
  UniqueFd root(open(mount.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct statx root_stat {};
  if (!root.valid() ||
      statx(root.get(), "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &root_stat) != 0) {
    return {};
  }
  // Something mounted over the mount point would answer for other inodes.
  if (KernelDevFromUser(makedev(root_stat.stx_dev_major, root_stat.stx_dev_minor)) !=
      mount.kernel_dev) {
    return {};
  }
  std::map<uint64_t, const InotifyWatch*> wanted;
  for (const InotifyWatch& w : watches) {
    if (w.sdev == mount.kernel_dev) wanted.emplace(w.ino, &w);
  }
  std::erase_if(st.known, [&](const auto& entry) { return wanted.count(entry.first) == 0; });

  // Check a few remembered paths again, round robin: a watched directory
  // may have been renamed since.
  const int64_t recheck_until = MonotonicMs() + kRecheckBudgetMs;
  for (size_t n = 0; n < st.known.size() && MonotonicMs() < recheck_until; ++n) {
    auto it = st.known.lower_bound(st.recheck_from);
    if (it == st.known.end()) it = st.known.begin();
    st.recheck_from = it->first + 1;
    const auto watch = wanted.find(it->first);
    if (it->second.found &&
        !StillThere(root.get(), mount, it->first, watch == wanted.end() ? nullptr : watch->second,
                    st, it->second)) {
      it->second = NotFound(now_ms);
    }
  }

  std::set<uint64_t> to_walk;
  for (const auto& [ino, watch] : wanted) {
    auto [it, added] = st.known.try_emplace(ino, NotFound(now_ms));
    Known& k = it->second;
    if (k.found || (k.tried && now_ms - k.tried_ms < kNotFoundRetryMs)) continue;
    if (ino == root_stat.stx_ino) {
      k = Known{.rel = "", .is_dir = true, .found = true};
    } else if (!ByHandle(root.get(), mount, *watch, st, k)) {
      to_walk.insert(ino);
    }
  }
  if (!to_walk.empty() || st.walk_started) Walk(root.get(), st, to_walk, now_ms);

  std::set<std::string> dirs;
  for (const auto& [ino, k] : st.known) {
    if (k.found) dirs.insert(k.is_dir ? k.rel : ParentOf(k.rel));
  }
  std::vector<std::string> out(dirs.begin(), dirs.end());
  if (out.size() > kMaxDirsPerTag) {
    if (truncated_logged_.insert(mount.tag).second) {
      Log("guest programs watch %zu directories in %s; telling the host of the %zu shallowest",
          out.size(), mount.path.c_str(), kMaxDirsPerTag);
    }
    // The shallow ones are the project's own; the deep ones, dependencies.
    auto depth = [](const std::string& d) { return std::count(d.begin(), d.end(), '/'); };
    std::stable_sort(out.begin(), out.end(), [&](const std::string& a, const std::string& b) {
      return depth(a) < depth(b);
    });
    out.resize(kMaxDirsPerTag);
    std::sort(out.begin(), out.end());
  }
  return out;
}

bool WatchedDirFinder::ByHandle(int root_fd, const CoveMount& mount, const InotifyWatch& watch,
                                MountState& st, Known& out) {
  if (!use_handles_ || watch.handle.empty()) return false;
  if (!st.handles_work && st.handle_failures >= kMaxHandleFailures) return false;
  std::string buf(sizeof(file_handle) + watch.handle.size(), '\0');
  auto* handle = reinterpret_cast<file_handle*>(buf.data());
  handle->handle_bytes = static_cast<unsigned>(watch.handle.size());
  handle->handle_type = watch.handle_type;
  std::memcpy(handle->f_handle, watch.handle.data(), watch.handle.size());
  // Needs CAP_DAC_READ_SEARCH; the inode is pinned by the watch, so this
  // finds it in the guest's caches, without asking the host.
  UniqueFd fd(open_by_handle_at(root_fd, handle, O_PATH | O_CLOEXEC));
  struct statx sx {};
  if (!fd.valid() || statx(fd.get(), "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC,
                           STATX_TYPE | STATX_INO | STATX_NLINK, &sx) != 0) {
    ++st.handle_failures;
    return false;
  }
  st.handles_work = true;
  // Removed but still watched (nlink 0), or reached by no path under the
  // mount (a disconnected dentry): not a directory the host can watch.
  if (sx.stx_ino != watch.ino || sx.stx_nlink == 0) return false;
  const auto rel = RelativeTo(mount.path, ReadLink("/proc/self/fd/" + std::to_string(fd.get())));
  if (!rel) return false;
  out = Known{.rel = *rel, .is_dir = S_ISDIR(sx.stx_mode), .found = true, .by_handle = true};
  ++stats_.by_handle;
  return true;
}

bool WatchedDirFinder::StillThere(int root_fd, const CoveMount& mount, uint64_t ino,
                                  const InotifyWatch* watch, MountState& st, Known& known) {
  if (known.by_handle && watch != nullptr) return ByHandle(root_fd, mount, *watch, st, known);
  struct statx sx {};
  const int flags =
      AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC | (known.rel.empty() ? AT_EMPTY_PATH : 0);
  return statx(root_fd, known.rel.c_str(), flags, STATX_INO, &sx) == 0 && sx.stx_ino == ino;
}

void WatchedDirFinder::Walk(int root_fd, MountState& st, const std::set<uint64_t>& wanted,
                            int64_t now_ms) {
  if (!st.walk_started) {
    st.walk_queue.assign(1, "");
    st.walk_started = true;
    st.walk_started_ms = now_ms;
  }
  // Everything not found yet, including inodes wanted since earlier scans.
  std::set<uint64_t> left = wanted;
  for (const auto& [ino, k] : st.known) {
    if (!k.found && !k.tried) left.insert(ino);
  }
  const int64_t until = MonotonicMs() + kWalkBudgetMs;
  while (!left.empty() && !st.walk_queue.empty() && MonotonicMs() < until) {
    const std::string dir = std::move(st.walk_queue.front());
    st.walk_queue.pop_front();
    // EXDEV (another mount inside), gone, or no permission: skipped.
    const int fd = OpenBeneath(root_fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) continue;
    DIR* d = fdopendir(fd);
    if (d == nullptr) {
      close(fd);
      continue;
    }
    while (dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      bool is_dir = e->d_type == DT_DIR;
      if (e->d_type == DT_UNKNOWN) {
        struct stat s {};
        is_dir = fstatat(dirfd(d), e->d_name, &s, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(s.st_mode);
      }
      std::string child = dir.empty() ? e->d_name : dir + "/" + e->d_name;
      // readdir's d_ino is the inode number the watch shows, on 9p too.
      if (left.erase(e->d_ino) != 0) {
        st.known[e->d_ino] = Known{.rel = child, .is_dir = is_dir, .found = true};
        ++stats_.by_walk;
      }
      if (is_dir && st.walk_queue.size() < kMaxWalkQueue) st.walk_queue.push_back(std::move(child));
    }
    closedir(d);
  }
  if (left.empty()) st.walk_queue.clear();
  if (!st.walk_queue.empty()) return;
  // The whole tree was read: what was wanted before this walk began is not
  // in it (e.g. inside a nested mount) until kNotFoundRetryMs passed.
  st.walk_started = false;
  for (uint64_t ino : left) {
    Known& k = st.known[ino];
    if (k.first_wanted_ms <= st.walk_started_ms) {
      k.tried = true;
      k.tried_ms = now_ms;
    }
  }
}

}  // namespace cove::agent
