#include "daemon/mount/mount_spec.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cove::daemon {
namespace {

// Guest directories a mount must not cover, or be under: the guest's own
// system, its runtime state, and where cove keeps its guest side.
constexpr const char* kSystemPaths[] = {"/proc", "/sys",     "/dev",          "/etc",    "/usr",
                                        "/bin",  "/sbin",    "/lib",          "/lib64",  "/boot",
                                        "/run",  "/var/lib", "/var/log/cove", "/opt/cni"};
// Guest directories a mount must not be, though mounts may go below them.
constexpr const char* kSystemParents[] = {"/", "/var", "/tmp", "/home", "/mnt", "/srv", "/opt"};

// True if `path` is `dir` or below it. Both normalized, without a trailing
// slash (but "/").
bool Under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || absl::StartsWith(path, dir + "/");
}

// Lexically normal, no trailing slash, no "." or ".." parts, no "//".
bool Normal(const std::string& path) {
  if (path.empty() || path[0] != '/') return false;
  if (path.size() > 1 && path.back() == '/') return false;
  if (absl::StrContains(path, "//")) return false;
  for (const char* part : {"/./", "/../"}) {
    if (absl::StrContains(path + "/", part)) return false;
  }
  return true;
}

}  // namespace

std::string DescribeMount(const cove::v1::Mount& mount) {
  std::string out = mount.host_path();
  const char* type = mount.type() == cove::v1::MOUNT_TYPE_VIRTIOFS ? "virtiofs"
                     : mount.type() == cove::v1::MOUNT_TYPE_9P     ? "9p"
                                                                   : "";
  if (*type != '\0' || mount.read_only()) {
    absl::StrAppend(&out, " (", type, *type != '\0' && mount.read_only() ? ", " : "",
                    mount.read_only() ? "read-only" : "", ")");
  }
  if (!mount.guest_path().empty() && mount.guest_path() != mount.host_path()) {
    absl::StrAppend(&out, " at ", mount.guest_path());
  }
  return out;
}

absl::Status CheckMounts(const google::protobuf::RepeatedPtrField<cove::v1::Mount>& mounts) {
  if (mounts.size() > kMaxMounts) {
    return absl::InvalidArgumentError(
        absl::StrCat(mounts.size(), " mounts; a machine takes at most ", kMaxMounts));
  }
  for (int i = 0; i < mounts.size(); ++i) {
    const cove::v1::Mount& m = mounts[i];
    const std::string what = absl::StrCat("--mount ", DescribeMount(m));
    if (!Normal(m.host_path())) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": the host path must be absolute and normal"));
    }
    const std::string& guest = m.guest_path();
    if (!Normal(guest)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": the guest path '", guest, "' must be absolute, like /src or /home/me/project"));
    }
    if (m.type() != cove::v1::MOUNT_TYPE_AUTO && m.type() != cove::v1::MOUNT_TYPE_VIRTIOFS &&
        m.type() != cove::v1::MOUNT_TYPE_9P) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unknown type; use auto, virtiofs or 9p"));
    }
    for (const char* sys : kSystemPaths) {
      if (Under(guest, sys)) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": ", guest, " is ", guest == sys ? "" : "inside ", sys,
            ", which the guest needs for itself; mount it somewhere else (e.g. /src)"));
      }
    }
    for (const char* sys : kSystemParents) {
      if (guest == sys) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": ", guest, " would hide the guest's own ", guest,
            "; mount it below it instead (e.g. ", guest == std::string("/") ? "" : guest, "/src)"));
      }
    }
    for (int j = 0; j < i; ++j) {
      const std::string& other = mounts[j].guest_path();
      if (other == guest) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": ", guest, " is already the guest path of --mount ", mounts[j].host_path()));
      }
      if (Under(guest, other) || Under(other, guest)) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": ", guest, " and ", other, " (--mount ", mounts[j].host_path(),
            ") overlap; one would hide part of the other. Mount only the outer one, or move one"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ResolveMounts(cove::v1::MachineSpec& spec, const std::string& home) {
  if (spec.no_mounts()) {
    if (spec.mounts_size() > 0) {
      return absl::InvalidArgumentError("--mount none cannot go with other --mount flags");
    }
    return absl::OkStatus();
  }
  if (spec.mounts_size() == 0) {
    if (home.empty()) {
      return absl::FailedPreconditionError(
          "HOME is not set for coved, so there is no default home mount; pass --mount DIR or "
          "--mount none");
    }
    cove::v1::Mount* m = spec.add_mounts();
    m->set_host_path(home);
  }
  for (cove::v1::Mount& m : *spec.mutable_mounts()) {
    const std::string asked = m.host_path();
    const std::string what = absl::StrCat("--mount ", asked);
    if (asked.empty() || asked[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": the host path must be absolute (the cove CLI makes it so)"));
    }
    char resolved[PATH_MAX];
    if (::realpath(asked.c_str(), resolved) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", std::strerror(errno),
                       errno == ENOENT ? "; create the directory first or fix the path" : ""));
    }
    struct stat st {};
    if (::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", resolved, " is not a directory; mount the directory it is in"));
    }
    if (::access(resolved, R_OK | X_OK) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat(what, ": you cannot read ", resolved, " (", std::strerror(errno),
                       "); fix its permissions or mount another directory"));
    }
    m.set_host_path(resolved);
    if (m.guest_path().empty()) m.set_guest_path(resolved);
  }
  return CheckMounts(spec.mounts());
}

}  // namespace cove::daemon
