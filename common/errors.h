// Machine-readable reasons on errors (proto/cove/v1/errors.proto): where an
// error starts, WithReason tags its absl::Status; at the API's edge
// (daemon/api/status.cc) the tag becomes the google.rpc.Status in the
// grpc-status-details-bin trailer; a client reads it back with
// ErrorInfoOf. Untagged errors get a reason from their code alone.
#pragma once

#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "cove/v1/errors.pb.h"

namespace cove {

// The ErrorInfo domain of every cove.v1 error.
inline constexpr std::string_view kErrorDomain = "cove.v1";

using ErrorMetadata = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// `status` (not OK) tagged with `reason` and metadata (lowerCamelCase keys:
// machine, field, state, hostPort, accel, image, arch). Tagging again
// replaces the tag.
absl::Status WithReason(absl::Status status, cove::v1::ErrorReason reason,
                        ErrorMetadata metadata = {});

// `status` tagged with `reason` unless it has a reason already: for a call
// site that knows what a failure of the step it called means.
absl::Status OrReason(absl::Status status, cove::v1::ErrorReason reason,
                      ErrorMetadata metadata = {});

struct ErrorInfo {
  cove::v1::ErrorReason reason = cove::v1::ERROR_REASON_UNSPECIFIED;
  std::map<std::string, std::string> metadata;
};

// The tag of `status`; without one, the reason its code implies
// (INVALID_ARGUMENT: INVALID_REQUEST, and so on; else UNCLASSIFIED).
ErrorInfo ErrorInfoOf(const absl::Status& status);

// The serialized google.rpc.Status for `status` (not OK): code, message and
// one google.rpc.ErrorInfo.
std::string ErrorDetails(const absl::Status& status);

// Reads ErrorDetails' output back ("" or garbage: UNSPECIFIED).
ErrorInfo ParseErrorDetails(const std::string& details);

}  // namespace cove
