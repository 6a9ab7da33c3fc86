// Crash-safe file replacement: after a crash at any point a reader sees
// either the old contents or the new, never a torn file.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cove {

// Writes `contents` to a temporary file beside `path`, fsyncs it, renames it
// over `path` and fsyncs the directory. Temporary names start with ".tmp-" so
// startup repair can find leftovers.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents,
                                 int mode = 0600);

// RESOURCE_EXHAUSTED, saying how much is missing, unless the filesystem
// holding `dir` has `need_bytes` free; `what` is what needs them ("the
// image copy").
absl::Status CheckFreeSpace(const std::string& dir, uint64_t need_bytes, absl::string_view what);

// "No space left on device" errors say what to do; others pass through.
absl::Status FileError(absl::string_view what, const std::string& path, int err);

// Whole file, or NOT_FOUND / an I/O error.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The last `n` non-blank lines of a log, joined with " | ", read from at
// most its last 16 KiB (a long-running guest's console can be large); ""
// when there is none.
std::string TailLines(const std::string& path, size_t n);

}  // namespace cove
