// Mounting (EnsureMounted) and the helpers shared by the mount files. The
// loop-facing CoveMounts is in cove_mounts.cc.
#include "guest/agent/mounts/mounts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "guest/agent/core/log.h"
#include "guest/agent/core/unique_fd.h"

namespace cove::agent {
namespace {

// mountinfo grows with containers' mounts; this is thousands of them.
constexpr size_t kMaxMountInfo = size_t{4} << 20;
constexpr size_t kMaxSmallFile = size_t{64} << 10;

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    if (end > pos) fields.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  return fields;
}

bool FileSystemKnown(const char* fstype) {
  const std::string text = ReadBoundedFile("/proc/filesystems", kMaxSmallFile);
  // Lines are "nodev\tNAME" or "\tNAME".
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    const size_t tab = line.rfind('\t');
    if (line.substr(tab == std::string_view::npos ? 0 : tab + 1) == fstype) return true;
  }
  return false;
}

// Loads the modules the image lists for `fstype`. Returns "" or a note on
// what failed, for the mount error. No list: built in, or not in this image.
std::string LoadModules(const char* fstype) {
  const std::string list = std::string(kOnDemandModuleLists) + "/" + fstype;
  if (access(list.c_str(), F_OK) != 0) return "";
  for (const std::string& name : ParseModuleList(ReadBoundedFile(list, kMaxSmallFile))) {
    const std::string path = std::string(kModuleDir) + "/" + name + ".ko";
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return "; cannot open module " + path + ": " + std::strerror(errno);
    if (syscall(SYS_finit_module, fd.get(), "", 0) != 0 && errno != EEXIST) {
      return "; loading module " + name + ": " + std::strerror(errno);
    }
    Log("loaded module %s for %s", name.c_str(), fstype);
  }
  return "";
}

// mkdir -p with mode 0755; "" or why not.
std::string MakeDirs(const std::string& path) {
  for (size_t slash = 1; slash <= path.size(); ++slash) {
    if (slash != path.size() && path[slash] != '/') continue;
    const std::string prefix = path.substr(0, slash);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return "cannot create " + prefix + ": " + std::strerror(errno);
    }
  }
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return std::string("cannot stat it: ") + std::strerror(errno);
  if (!S_ISDIR(st.st_mode)) return "it is not a directory";
  return "";
}

CoveMount Describe(const MountRequest& request, const std::string& path,
                   const MountInfoEntry& entry) {
  return CoveMount{request.tag, path, request.type,
                   KernelDevFromUser(makedev(entry.major, entry.minor)), request.read_only};
}

}  // namespace

const char* FsTypeName(FsType type) { return type == FsType::kNineP ? "9p" : "virtiofs"; }

uint32_t KernelDevFromUser(dev_t dev) {
  return static_cast<uint32_t>((major(dev) << 20) | (minor(dev) & 0xfffff));
}

dev_t UserDevFromKernel(uint32_t kernel_dev) {
  return makedev(kernel_dev >> 20, kernel_dev & 0xfffff);
}

std::string ReadBoundedFile(const std::string& path, size_t max_bytes, int dirfd) {
  std::string text;
  UniqueFd fd(openat(dirfd, path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return text;
  char buf[16384];
  while (text.size() < max_bytes) {
    const ssize_t n = read(fd.get(), buf, std::min(sizeof(buf), max_bytes - text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

int OpenBeneath(int root_fd, const std::string& rel, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  const char* path = rel.empty() ? "." : rel.c_str();
  const int fd = static_cast<int>(syscall(SYS_openat2, root_fd, path, &how, sizeof(how)));
  if (fd >= 0 || errno != ENOSYS) return fd;
  // Before Linux 5.6: the callers' paths have no ".." and are not absolute.
  return openat(root_fd, path, flags | O_CLOEXEC | O_NOFOLLOW);
}

std::vector<MountInfoEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountInfoEntry> entries;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::vector<std::string_view> f = Fields(text.substr(pos, eol - pos));
    pos = eol + 1;
    // ID PARENT MAJOR:MINOR ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 7 || dash + 2 >= f.size()) continue;
    MountInfoEntry e;
    const std::string dev(f[2]);
    if (std::sscanf(dev.c_str(), "%u:%u", &e.major, &e.minor) != 2) continue;
    e.mount_point = Unescape(f[4]);
    e.fstype = std::string(f[dash + 1]);
    e.source = Unescape(f[dash + 2]);
    entries.push_back(std::move(e));
  }
  return entries;
}

std::optional<MountInfoEntry> FindMount(const std::vector<MountInfoEntry>& mounts,
                                        const std::string& path, const std::string& fstype,
                                        const std::string& tag) {
  // Later lines are mounted later, on top of earlier ones at the same place.
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    if (it->mount_point == path && it->fstype == fstype && it->source == tag) return *it;
  }
  return std::nullopt;
}

std::vector<std::string> ParseModuleList(std::string_view text) {
  std::vector<std::string> names;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) {
      line.remove_prefix(1);
    }
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) {
      line.remove_suffix(1);
    }
    if (line.empty() || line.find('/') != std::string_view::npos) continue;
    names.emplace_back(line);
  }
  return names;
}

std::string DescribeMountError(FsType type, const std::string& tag, const std::string& path,
                               int err, bool fs_known) {
  const std::string fstype = FsTypeName(type);
  std::string text = "mount " + fstype + " " + tag + " on " + path + ": " + std::strerror(err);
  const char* device = type == FsType::kNineP ? "virtio-9p" : "virtiofs";
  std::string hint;
  switch (err) {
    case ENODEV:
      hint = fs_known ? "is the " + std::string(device) + " device missing?"
                      : "this guest kernel has no " + fstype +
                            " file system: mount another way (--mount-type), or none "
                            "(cove set NAME --mount none)";
      break;
    case EINVAL:  // virtiofs: no device with that tag
    case ENOENT:  // 9p: no channel with that tag
      hint = "is there a " + std::string(device) + " device with the tag " + tag + "?";
      break;
    case EPERM:
      hint = "mounting needs root (CAP_SYS_ADMIN)";
      break;
    case EBUSY:
      hint = "something else is mounted there";
      break;
    default:
      break;
  }
  return hint.empty() ? text : text + " (" + hint + ")";
}

MountResult EnsureMounted(const MountRequest& request) {
  MountResult result;
  const char* fstype = FsTypeName(request.type);
  const std::string what =
      std::string("mount ") + fstype + " " + request.tag + " on " + request.guest_path + ": ";
  if (request.tag.empty()) {
    result.error = what + "the mount has no tag";
    return result;
  }
  if (request.guest_path.empty() || request.guest_path[0] != '/') {
    result.error = what + "the guest path is not absolute";
    return result;
  }
  if (std::string why = MakeDirs(request.guest_path); !why.empty()) {
    result.error = what + "no mount point: " + why;
    return result;
  }
  // mountinfo shows the path with symlinks resolved (/home -> /var/home).
  char resolved[PATH_MAX];
  if (realpath(request.guest_path.c_str(), resolved) == nullptr) {
    result.error = what + "cannot resolve the path: " + std::strerror(errno);
    return result;
  }
  const std::string path = resolved;
  auto mounted = [&] {
    return FindMount(ParseMountInfo(ReadBoundedFile("/proc/self/mountinfo", kMaxMountInfo)), path,
                     fstype, request.tag);
  };
  if (auto entry = mounted()) {
    result.mounted = true;
    result.mount = Describe(request, path, *entry);
    return result;
  }
  std::string module_note;
  if (!FileSystemKnown(fstype)) module_note = LoadModules(fstype);
  const char* data = request.type == FsType::kNineP ? kNinePMountOptions : "";
  const unsigned long flags = request.read_only ? MS_RDONLY : 0;
  if (mount(request.tag.c_str(), path.c_str(), fstype, flags, data) != 0) {
    const int err = errno;
    result.error =
        DescribeMountError(request.type, request.tag, path, err, FileSystemKnown(fstype)) +
        module_note;
    return result;
  }
  auto entry = mounted();
  if (!entry) {
    // Cannot happen: the kernel just mounted it. Say so rather than guess.
    result.error = what + "mounted, but not found in /proc/self/mountinfo";
    return result;
  }
  result.mounted = true;
  result.newly_mounted = true;
  result.mount = Describe(request, path, *entry);
  return result;
}

}  // namespace cove::agent
