// The docker CLI context for a machine with the docker runtime: cove-NAME,
// pointing at the machine's forwarded docker.sock. Created or updated on
// start, made current on request, removed on delete. Does nothing when the
// docker CLI is not installed.
#pragma once

#include <string>

#include "cove/v1/machines.pb.h"

namespace cove::client {

std::string DockerContextName(const std::string& machine);

// Prints what it did (or why not) on stderr. Never fails the command: the
// machine is usable without a context.
void EnsureDockerContext(const cove::v1::Machine& machine, bool activate);
void RemoveDockerContext(const std::string& machine);

}  // namespace cove::client
