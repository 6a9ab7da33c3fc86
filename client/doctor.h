// `cove doctor`: what coved and the agent know, read through the API, made
// into findings a person can act on. Pure, so it is tested on fixed input.
#pragma once

#include <string>
#include <vector>

#include "cove/v1/daemon.pb.h"
#include "cove/v1/machines.pb.h"

namespace cove::client {

struct Finding {
  std::string severity;  // "ok", "info", "warning", "error"
  std::string subject;   // "host", "machine dev", "container web in dev"
  std::string message;
  std::string fix;  // empty when there is nothing to do
};

// What binfmt emulation cost in bench/foreign.sh (docs/benchmarks.md): the
// same workload in an arm64 container on an x86_64 machine, against amd64.
inline constexpr const char* kBinfmtCost = "7-9x slower";

std::vector<Finding> Diagnose(const cove::v1::DaemonInfo& info,
                              const std::vector<cove::v1::Machine>& machines);

}  // namespace cove::client
