// Crash-safe file replacement: after a crash at any point a reader sees
// either the old contents or the new, never a torn file.
#pragma once

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

// Whole file, or NOT_FOUND / an I/O error.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace cove
