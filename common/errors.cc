#include "common/errors.h"

#include "google/protobuf/any.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace cove {
namespace {

constexpr char kErrorInfoType[] = "type.googleapis.com/google.rpc.ErrorInfo";

cove::v1::ErrorReason ReasonOfCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return cove::v1::INVALID_REQUEST;
    case absl::StatusCode::kResourceExhausted:
      return cove::v1::TOO_MANY;
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown:
      return cove::v1::HOST_ERROR;
    default:
      return cove::v1::UNCLASSIFIED;
  }
}

ErrorInfo FromProto(const google::rpc::ErrorInfo& info) {
  ErrorInfo out;
  cove::v1::ErrorReason reason;
  out.reason =
      cove::v1::ErrorReason_Parse(info.reason(), &reason) ? reason : cove::v1::UNCLASSIFIED;
  out.metadata.insert(info.metadata().begin(), info.metadata().end());
  return out;
}

}  // namespace

absl::Status WithReason(absl::Status status, cove::v1::ErrorReason reason, ErrorMetadata metadata) {
  if (status.ok()) return status;
  google::rpc::ErrorInfo info;
  info.set_reason(cove::v1::ErrorReason_Name(reason));
  info.set_domain(std::string(kErrorDomain));
  for (const auto& [key, value] : metadata) {
    (*info.mutable_metadata())[std::string(key)] = std::string(value);
  }
  status.SetPayload(kErrorInfoType, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status OrReason(absl::Status status, cove::v1::ErrorReason reason, ErrorMetadata metadata) {
  if (status.ok() || status.GetPayload(kErrorInfoType).has_value()) return status;
  return WithReason(std::move(status), reason, metadata);
}

ErrorInfo ErrorInfoOf(const absl::Status& status) {
  if (status.ok()) return {};
  google::rpc::ErrorInfo info;
  info.ParseFromString(
      std::string(*OrReason(status, ReasonOfCode(status.code())).GetPayload(kErrorInfoType)));
  return FromProto(info);
}

std::string ErrorDetails(const absl::Status& status) {
  // The tag is a serialized ErrorInfo already: it goes on the wire as it is.
  const absl::Status tagged = OrReason(status, ReasonOfCode(status.code()));
  google::rpc::Status out;
  out.set_code(static_cast<int>(status.code()));
  out.set_message(std::string(status.message()));
  auto* any = out.add_details();
  any->set_type_url(kErrorInfoType);
  any->set_value(std::string(*tagged.GetPayload(kErrorInfoType)));
  return out.SerializeAsString();
}

ErrorInfo ParseErrorDetails(const std::string& details) {
  google::rpc::Status status;
  if (details.empty() || !status.ParseFromString(details)) return {};
  for (const auto& any : status.details()) {
    google::rpc::ErrorInfo info;
    if (any.Is<google::rpc::ErrorInfo>() && any.UnpackTo(&info)) return FromProto(info);
  }
  return {};
}

}  // namespace cove
