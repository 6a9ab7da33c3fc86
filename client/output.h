// How machines and images look to people (tables) and to scripts (JSON with
// plain names: state "running", sizes in bytes).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/api_names.h"
#include "cove/v1/daemon.pb.h"
#include "cove/v1/images.pb.h"
#include "cove/v1/machines.pb.h"

namespace cove::client {

std::string EventKindName(cove::v1::EventKind kind);

nlohmann::json MachineJson(const cove::v1::Machine& m);
const char* MountTypeName(cove::v1::MountType type);
const char* MountStateName(cove::v1::MountState state);
nlohmann::json AccelVerdictsJson(
    const google::protobuf::RepeatedPtrField<cove::v1::AccelVerdict>& verdicts);
nlohmann::json ImageJson(const cove::v1::Image& image);
nlohmann::json EventJson(const cove::v1::Event& e);
nlohmann::json OomKillJson(const cove::v1::OomKill& k);
nlohmann::json ForwardJson(const cove::v1::Forward& f);
// One line per forward: proto, host end, guest end, state, connections, why.
std::string ForwardTable(const cove::v1::Machine& m);

// One line per machine under a header.
std::string MachineTable(const cove::v1::ListMachinesResponse& list);
std::string ImageTable(const cove::v1::ListImagesResponse& list);

}  // namespace cove::client
