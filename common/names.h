// Validation of user-chosen names (machines, images). Names become directory
// names under $COVE_HOME and parts of socket paths, so they are strict.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cove {

inline constexpr size_t kMaxNameLength = 63;

// OK when `name` is [a-z][a-z0-9-]*, at most kMaxNameLength characters, and
// does not end with '-'. `what` names the thing in the message ("machine").
absl::Status ValidateName(absl::string_view name, absl::string_view what = "machine");

}  // namespace cove
