// The unpacking half of `cove image import URL`, in cove-fetch: libarchive
// (and its compressors) lives in this short-lived process, never in coved.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "daemon/fetch/download.h"

namespace cove::fetch {

// Unpacks the tar (plain or gzip, xz, zstd compressed) at `archive` into the
// empty directory `dir`, refusing anything but files and directories,
// absolute paths and "..". Returns the image directory inside (`dir` itself,
// or its one subdirectory holding an image.json). `progress` (archive bytes
// read of its size) runs about once a second. What was unpacked before a
// failure stays in `dir`, for the caller to remove.
absl::StatusOr<std::string> UnpackImage(const std::string& archive, const std::string& dir,
                                        const Progress& progress);

}  // namespace cove::fetch
