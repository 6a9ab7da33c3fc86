// The agent's side of the control protocol on stream 0 (cove.agent.v1):
// building the messages it sends and carrying out the host's clock and
// shutdown. Kept apart from the session loop so the loop only decides when,
// not what.
#pragma once

#include <cstdint>
#include <string>

#include "common/link_frame.h"
#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/core/sysinfo.h"

namespace cove::agent {

inline constexpr uint32_t kProtocolVersion = 1;
// A guest clock further than this from the host's is set to the host's.
inline constexpr int64_t kMaxClockSkewMs = 2000;

// What the agent says about itself in every Hello; fixed for its lifetime.
struct AgentIdentity {
  std::string agent_version;
  KernelInfo kernel;
  uint64_t boot_to_agent_ms = 0;
  uint32_t pid = 0;
};

// Reads uname and the pid; `boot_to_agent_ms` is CLOCK_BOOTTIME at start.
AgentIdentity CurrentIdentity(uint64_t boot_to_agent_ms);

// `session_id` echoes HostHello.session_id, 0 when unprompted.
v1::GuestToHost MakeHello(const AgentIdentity& identity, uint64_t session_id);
v1::GuestToHost MakeHeartbeat(uint64_t seq);
v1::GuestToHost MakeShutdownAck();

// A CONTROL frame on stream 0 carrying `message`.
link::Frame ControlFrame(const v1::GuestToHost& message);

// Sets CLOCK_REALTIME to `host_time_unix_ms` when the guest clock is off by
// more than kMaxClockSkewMs. Failures (EPERM when unprivileged) are logged
// and otherwise ignored.
void CorrectClock(int64_t host_time_unix_ms);

// Asks init (pid 1) to power the guest off or, with `reboot`, to reboot it.
// Failures are logged.
void AskInitToShutDown(bool reboot);

}  // namespace cove::agent
