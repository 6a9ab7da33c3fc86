// virtiofsd, the vhost-user daemon behind a QEMU virtiofs mount: finding one
// that runs as the user, and starting one per mount.
//
// Only the Rust virtiofsd (1.x, Debian trixie's /usr/libexec/virtiofsd) can:
// it makes its own user namespace. QEMU's old C virtiofsd (Debian bookworm's
// /usr/lib/qemu/virtiofsd) needs root and is passed over.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cove::daemon {

struct VirtiofsdBinary {
  std::string path;
  std::string version;  // "virtiofsd 1.13.2"
};

// Looks at, in order: $COVE_VIRTIOFSD, virtiofsd in PATH, /usr/libexec/virtiofsd,
// /usr/lib/qemu/virtiofsd, and the "fs" entries of QEMU's vhost-user JSON
// descriptors (/usr/share/qemu/vhost-user, /etc/qemu/vhost-user). NOT_FOUND
// says what was looked at and why each candidate was passed over. The first
// call runs `--version` of candidates (blocking, tens of milliseconds); a
// found one is kept for the process, a miss for 30 s. Any thread.
absl::StatusOr<VirtiofsdBinary> FindVirtiofsd();

// The argv of a virtiofsd serving `shared_dir` on the listening socket that it
// gets as fd 3. Files the guest makes belong to this process's uid and gid,
// whatever guest user makes them (the guest sees the host user's files as
// owned by that uid and gid; chown is accepted and changes nothing).
std::vector<std::string> VirtiofsdArgv(const std::string& binary, const std::string& shared_dir,
                                       bool read_only, unsigned uid, unsigned gid);

}  // namespace cove::daemon
