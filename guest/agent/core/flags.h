// Command line of cove-agent. Hand-written rather than CLI11 so that the
// static agent pulls in nothing beyond libc, libstdc++ and protobuf-lite.
#pragma once

#include <string>

namespace cove::agent {

inline constexpr char kDefaultPortName[] = "org.cove.agent.0";
inline constexpr int kDefaultHeartbeatMs = 5000;
inline constexpr int kMinHeartbeatMs = 10;
inline constexpr int kMaxHeartbeatMs = 3600 * 1000;

struct Flags {
  // When set, connect to this unix stream socket instead of opening the
  // virtio-serial port (tests and benchmarks on the host).
  std::string connect_path;
  // When set, listen on this unix stream socket and serve each accepted
  // connection as the channel, one at a time (the host connects, as coved
  // connects to QEMU's chardev socket). Excludes connect_path and port_name.
  std::string listen_path;
  // Name of the virtio-serial port, as in /sys/class/virtio-ports/*/name.
  std::string port_name = kDefaultPortName;
  int heartbeat_ms = kDefaultHeartbeatMs;
  // False with --no-poweroff: a ShutdownRequest then exits the agent instead
  // of signalling init (pid 1), which on a host would be the host's init.
  bool poweroff = true;
  bool show_version = false;
  bool show_help = false;
};

struct FlagsResult {
  Flags flags;
  // Non-empty when the command line is invalid; a message for the user.
  std::string error;
};

// Accepts "--flag value" and "--flag=value". argv[0] is skipped.
FlagsResult ParseFlags(int argc, const char* const* argv);

// The --help text.
extern const char kUsage[];

}  // namespace cove::agent
