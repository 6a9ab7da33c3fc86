// The one place where absl::Status becomes grpc::Status.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace cove::daemon::api {

grpc::Status ToGrpc(const absl::Status& status);

}  // namespace cove::daemon::api
