// The one place where absl::Status becomes grpc::Status, with its reason
// (common/errors.h) in the grpc-status-details-bin trailer.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "common/errors.h"

namespace cove::daemon::api {

grpc::Status ToGrpc(const absl::Status& status);
// An error made at the API's edge, with its reason.
grpc::Status Error(cove::v1::ErrorReason reason, grpc::StatusCode code, const std::string& message,
                   ErrorMetadata metadata = {});

}  // namespace cove::daemon::api
