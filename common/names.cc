#include "common/names.h"

#include "absl/strings/str_cat.h"

namespace cove {
namespace {

bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

absl::Status ValidateName(absl::string_view name, absl::string_view what) {
  const std::string rule = absl::StrCat(
      "; a ", what, " name is 1 to ", kMaxNameLength,
      " characters of a-z, 0-9 and '-', starting with a letter (e.g. \"dev\" or \"web-2\")");
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " name is empty", rule));
  if (name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " name is ", name.size(), " characters long", rule));
  }
  if (!IsLower(name.front())) {
    return absl::InvalidArgumentError(absl::StrCat("invalid ", what, " name \"", name, "\"", rule));
  }
  for (char c : name) {
    if (!IsLower(c) && !IsDigit(c) && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid ", what, " name \"", name, "\"", rule));
    }
  }
  if (name.back() == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ", what, " name \"", name, "\": it ends with '-'", rule));
  }
  return absl::OkStatus();
}

}  // namespace cove
