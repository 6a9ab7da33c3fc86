// `cove image import URL`: a shared image, downloaded. The archive is a tar
// (plain or gzip, xz, zstd compressed) of one image directory, as
// `tar -C ~/.cove/images -cf NAME.tar NAME` makes it; its sha256 is checked
// against the digest the user gives, and the image's own digests after.
//
// The work runs in cove-fetch (daemon/fetch/), a child process per step, so
// that libcurl, its TLS library and libarchive never load into coved: they
// would stay resident in the idle daemon (docs/benchmarks.md). It is
// installed beside coved (PREFIX/lib/cove, or coved's directory in a build).
//
// Blocking: runs on the gRPC handler's thread, never on the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cove::daemon {

// Progress of a download: bytes so far, the total (0 when the server did not
// say) and bytes per second; called about once a second. Return false to
// cancel.
using FetchProgress = std::function<bool(uint64_t done, uint64_t total, uint64_t per_second)>;

// True for http:// and https:// references.
bool IsUrl(const std::string& ref);

// Downloads `url` to `file` (created, 0600), hashing it as it comes; OK only
// when the transfer completed and, if `sha256` is not empty, the digest
// matches. `file` is removed on any failure. Errors say what to do.
absl::Status Download(const std::string& url, const std::string& file, const std::string& sha256,
                      const FetchProgress& progress);

// Unpacks the tar at `archive` into the empty directory `dir`, refusing
// anything but files and directories, absolute paths and "..". Returns the
// image directory inside (`dir` itself, or its one subdirectory). On failure
// `dir` may hold part of the archive: the caller removes it.
absl::StatusOr<std::string> UnpackImage(const std::string& archive, const std::string& dir);

}  // namespace cove::daemon
