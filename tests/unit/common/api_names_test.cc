// The CLI's words for API enums (common/api_names.h).
#include "common/api_names.h"

#include <catch2/catch.hpp>

using namespace cove;

TEST_CASE("EnumWord is the value's name without its enum's prefix, in lower case", "[api_names]") {
  CHECK(EnumWord(cove::v1::SERVICE_STATE_READY) == "ready");
  CHECK(EnumWord(cove::v1::SERVICE_STATE_RESTARTING) == "restarting");
  CHECK(EnumWord(cove::v1::LOG_SOURCE_CONTAINERD) == "containerd");
  CHECK(EnumWord(cove::v1::FORWARD_ROUTE_NETWORK) == "network");
  CHECK(EnumWord(cove::v1::SERVICE_STATE_UNSPECIFIED).empty());
  CHECK(EnumWord(static_cast<cove::v1::ServiceState>(77)).empty());
  // The hand-written names agree with the rule.
  for (auto s : {cove::v1::MACHINE_STATE_STOPPED, cove::v1::MACHINE_STATE_RUNNING,
                 cove::v1::MACHINE_STATE_ERROR}) {
    CHECK(EnumWord(s) == StateName(s));
  }
  CHECK(EnumWord(cove::v1::ACCEL_TCG) == AccelName(cove::v1::ACCEL_TCG));
}
