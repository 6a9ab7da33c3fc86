// Reasons on errors (common/errors.h): what a client decodes from the
// grpc-status-details-bin trailer.
#include "common/errors.h"

#include <catch2/catch.hpp>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

using namespace cove;

TEST_CASE("a tagged error carries its reason and metadata to the wire and back", "[errors]") {
  const absl::Status st = WithReason(absl::NotFoundError("no machine named 'x'"),
                                     cove::v1::MACHINE_NOT_FOUND, {{"machine", "x"}});
  CHECK(st.message() == "no machine named 'x'");  // the message stays
  const std::string wire = ErrorDetails(st);

  // What any client sees: a google.rpc.Status with one ErrorInfo.
  google::rpc::Status status;
  REQUIRE(status.ParseFromString(wire));
  CHECK(status.code() == 5);  // NOT_FOUND
  CHECK(status.message() == "no machine named 'x'");
  REQUIRE(status.details_size() == 1);
  CHECK(status.details(0).type_url() == "type.googleapis.com/google.rpc.ErrorInfo");
  google::rpc::ErrorInfo info;
  REQUIRE(status.details(0).UnpackTo(&info));
  CHECK(info.reason() == "MACHINE_NOT_FOUND");
  CHECK(info.domain() == "cove.v1");
  CHECK(info.metadata().at("machine") == "x");

  const ErrorInfo back = ParseErrorDetails(wire);
  CHECK(back.reason == cove::v1::MACHINE_NOT_FOUND);
  CHECK(back.metadata.at("machine") == "x");
}

TEST_CASE("OrReason keeps the reason given where the error started", "[errors]") {
  const absl::Status inner = WithReason(absl::FailedPreconditionError("running"),
                                        cove::v1::MACHINE_NOT_STOPPED, {{"machine", "m"}});
  CHECK(ErrorInfoOf(OrReason(inner, cove::v1::INVALID_SPEC)).reason ==
        cove::v1::MACHINE_NOT_STOPPED);
  CHECK(ErrorInfoOf(OrReason(absl::InvalidArgumentError("--cpus 0"), cove::v1::INVALID_SPEC,
                             {{"field", "spec.cpus"}}))
            .metadata.at("field") == "spec.cpus");
  CHECK(OrReason(absl::OkStatus(), cove::v1::INVALID_SPEC).ok());
}

TEST_CASE("an untagged error gets a reason from its code", "[errors]") {
  CHECK(ErrorInfoOf(absl::InvalidArgumentError("x")).reason == cove::v1::INVALID_REQUEST);
  CHECK(ErrorInfoOf(absl::InternalError("x")).reason == cove::v1::HOST_ERROR);
  CHECK(ErrorInfoOf(absl::NotFoundError("x")).reason == cove::v1::UNCLASSIFIED);
  CHECK(ParseErrorDetails("").reason == cove::v1::ERROR_REASON_UNSPECIFIED);
  CHECK(ParseErrorDetails("garbage").reason == cove::v1::ERROR_REASON_UNSPECIFIED);
}
