#include "daemon/api/status.h"

#include "common/errors.h"

namespace cove::daemon::api {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers. The third argument goes
  // out as the grpc-status-details-bin trailer.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      ErrorDetails(status));
}

grpc::Status Error(cove::v1::ErrorReason reason, grpc::StatusCode code, const std::string& message,
                   ErrorMetadata metadata) {
  return ToGrpc(
      WithReason(absl::Status(static_cast<absl::StatusCode>(code), message), reason, metadata));
}

}  // namespace cove::daemon::api
