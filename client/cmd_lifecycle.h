// Start and stop streams, shared by start, stop and restart.
#pragma once

#include <string>

#include "client/context.h"

namespace cove::client {

int RunStart(Context& ctx, const cove::v1::StartMachineRequest& req, bool activate);
int RunStop(Context& ctx, const std::string& name, bool force, unsigned timeout_s);

}  // namespace cove::client
