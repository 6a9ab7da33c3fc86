// The download half of `cove image import URL`, in cove-fetch: libcurl
// (with its TLS library) lives in this short-lived process, never in coved.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"

namespace cove::fetch {

// Progress of a transfer or an unpacking: bytes so far, the total (0 when
// unknown) and bytes per second. Return false to cancel.
using Progress = std::function<bool(uint64_t done, uint64_t total, uint64_t per_second)>;

// OK for a 64-hex-digit sha256 (either case) or an empty one (no check).
absl::Status CheckDigest(const std::string& sha256);

// Downloads `url` (http or https) to `file` (created, 0600), hashing it as it
// comes; OK only when the transfer completed and, if `sha256` is not empty,
// the digest matches. `progress` runs about once a second, and once at the
// end with the whole size. `file` is removed on any failure. Errors say what
// to do.
absl::Status Download(const std::string& url, const std::string& file, const std::string& sha256,
                      const Progress& progress);

}  // namespace cove::fetch
