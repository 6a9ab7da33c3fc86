// The rules of a machine's mount list (cove.v1.Mount): what a user may ask
// for, and how a request is resolved against the host's file system once, at
// create (or `cove set`), so later starts see the same directories.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cove/v1/machines.pb.h"

namespace cove::daemon {

// At most this many mounts per machine (one device and, for virtiofs, one
// virtiofsd each).
inline constexpr int kMaxMounts = 16;

// Pure checks of a list whose host paths are resolved: absolute paths, guest
// paths that are not the guest's own system directories, none twice, none
// inside another. Errors name the mount and say what to change.
absl::Status CheckMounts(const google::protobuf::RepeatedPtrField<cove::v1::Mount>& mounts);

// Fills the mount list of a spec being created or changed: with no mounts
// asked for (and no_mounts unset), the user's home (`home`, writable, at the
// same path); then each host path is resolved (symlinks; it must be a
// directory the user can read and enter), an empty guest path becomes the
// resolved host path, and CheckMounts runs. Touches the file system: call it
// off the loop thread.
absl::Status ResolveMounts(cove::v1::MachineSpec& spec, const std::string& home);

// "/home/u (virtiofs, read-only) at /src" for messages.
std::string DescribeMount(const cove::v1::Mount& mount);

}  // namespace cove::daemon
