// What cove-fetch (daemon/fetch/main.cc) tells coved (daemon/image/
// image_fetch.cc) on its stdout, one line each:
//
//   progress DONE TOTAL PER_SECOND   bytes so far, the total (0: unknown), the
//                                    rate; at least once a second while it works
//   image DIR                        unpack: the image directory it found
//   fail CODE MESSAGE                a failure, the last line: an absl::StatusCode
//                                    and the message for the user, on one line
//
// It exits 0 after success and 1 after a fail line; any other end (a signal,
// no fail line) is a crash. Lines are at most kMaxLine bytes.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cove::fetch {

inline constexpr size_t kMaxLine = 4096;

// Each with its newline.
std::string ProgressLine(uint64_t done, uint64_t total, uint64_t per_second);
std::string ImageLine(absl::string_view dir);
std::string FailLine(const absl::Status& status);

struct Line {
  enum class Kind { kProgress, kImage, kFail };
  Kind kind = Kind::kProgress;
  uint64_t done = 0, total = 0, per_second = 0;  // kProgress
  std::string dir;                               // kImage
  absl::Status status;                           // kFail: never OK
};

// One line without its newline; INTERNAL for anything else.
absl::StatusOr<Line> ParseLine(absl::string_view text);

}  // namespace cove::fetch
