// What the mount code (mounts.h), the watched-directory scan
// (watched_dirs.h) and the host-change replay (host_changes.h) share: the
// description of a host directory mounted in the guest ("a cove mount").
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace cove::agent {

enum class FsType { kVirtiofs, kNineP };

// The name mount(2), /proc/filesystems and mountinfo use: "virtiofs", "9p".
const char* FsTypeName(FsType type);

// A host directory mounted in the guest, found in mountinfo.
struct CoveMount {
  std::string tag;   // the device's tag, also the mount's source
  std::string path;  // the mount point, absolute, symlinks resolved
  FsType type = FsType::kVirtiofs;
  // The file system's device in the kernel's encoding (MAJOR << 20 | MINOR),
  // as /proc/PID/fdinfo prints an inotify watch's sdev.
  uint32_t kernel_dev = 0;
  bool read_only = false;
};

// The device numbers as the kernel keeps them internally (s_dev: 12 bits of
// major, 20 of minor) and as stat(2) and mountinfo show them (glibc's dev_t).
uint32_t KernelDevFromUser(dev_t dev);
dev_t UserDevFromKernel(uint32_t kernel_dev);

// Opens `rel` below the directory `root_fd` without leaving it: no "..",
// absolute or /proc magic symlinks out of it, no crossing into another
// mount (openat2 RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV).
// "" opens the root itself. Returns the fd or -1 with errno set.
int OpenBeneath(int root_fd, const std::string& rel, int flags);

// Reads at most `max_bytes` of the file at `path` (relative to `dirfd`);
// empty when it cannot be read. For /proc and small configuration files.
std::string ReadBoundedFile(const std::string& path, size_t max_bytes, int dirfd = AT_FDCWD);

}  // namespace cove::agent
