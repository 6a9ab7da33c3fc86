// Parsing and printing of byte sizes as users type them: "4GiB", "512MiB",
// "2G", "1.5GiB", or a plain number, which means GiB (as in Colima).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cove {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;
inline constexpr uint64_t kTiB = 1024 * kGiB;

// Bytes for `text`. Units (case-insensitive): B, K/KiB/KB, M/MiB/MB, G/GiB/GB,
// T/TiB/TB, all binary (1024-based). No unit means GiB. Zero, negative,
// fractional bytes, overflow and unknown units are errors naming `what`.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text, absl::string_view what);

// "2GiB", "512MiB", "1.5GiB", "100B".
std::string FormatSize(uint64_t bytes);

}  // namespace cove
