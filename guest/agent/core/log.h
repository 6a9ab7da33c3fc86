// A tiny stderr logger for cove-agent. The agent links statically and keeps
// no logging library; in the guest, init sends stderr to the console log.
#pragma once

namespace cove::agent {

// printf-style; prefixes "cove-agent: [<seconds since boot>]" and appends a
// newline. Safe to call from the agent's one thread only (no locking needed).
void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace cove::agent
