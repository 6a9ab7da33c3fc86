#include "common/sizes.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cove {
namespace {

constexpr std::pair<absl::string_view, uint64_t> kUnits[] = {
    {"", kGiB},    {"b", 1},     {"k", kKiB},   {"kb", kKiB},  {"kib", kKiB},
    {"m", kMiB},   {"mb", kMiB}, {"mib", kMiB}, {"g", kGiB},   {"gb", kGiB},
    {"gib", kGiB}, {"t", kTiB},  {"tb", kTiB},  {"tib", kTiB},
};

}  // namespace

absl::StatusOr<uint64_t> ParseSize(absl::string_view text, absl::string_view what) {
  const std::string hint = " (examples: 4GiB, 512MiB, 20 for 20 GiB)";
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (s.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty", hint));
  size_t split = 0;
  while (split < s.size() &&
         (absl::ascii_isdigit(s[split]) || s[split] == '.' || s[split] == '-' || s[split] == '+')) {
    ++split;
  }
  absl::string_view number(s.data(), split);
  absl::string_view unit = absl::StripAsciiWhitespace(absl::string_view(s).substr(split));
  double value = 0;
  if (number.empty() || !absl::SimpleAtod(number, &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", text, "\" is not a size", hint));
  }
  uint64_t multiplier = 0;
  for (const auto& [name, mult] : kUnits) {
    if (unit == name) multiplier = mult;
  }
  if (multiplier == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", text, "\" has an unknown unit \"", unit, "\"", hint));
  }
  if (value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be more than zero, got \"", text, "\""));
  }
  const double bytes = value * static_cast<double>(multiplier);
  if (bytes >= 18446744073709551615.0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", text, "\" is too large"));
  }
  if (bytes != std::floor(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", text, "\" is not a whole number of bytes"));
  }
  return static_cast<uint64_t>(bytes);
}

std::string FormatSize(uint64_t bytes) {
  constexpr std::pair<uint64_t, const char*> kSteps[] = {
      {kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}};
  for (const auto& [unit, name] : kSteps) {
    if (bytes >= unit) {
      if (bytes % unit == 0) return absl::StrCat(bytes / unit, name);
      return absl::StrFormat("%.1f%s", static_cast<double>(bytes) / unit, name);
    }
  }
  return absl::StrCat(bytes, "B");
}

}  // namespace cove
