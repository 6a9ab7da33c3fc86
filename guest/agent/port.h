// Finding and opening the agent channel: the virtio-serial port that QEMU
// exposes for coved in the guest, or (for tests on the host) a unix socket.
// Both give a non-blocking, close-on-exec byte stream fd.
#pragma once

#include <string>

#include "guest/agent/unique_fd.h"

namespace cove::agent {

struct ChannelSpec {
  // Unix stream socket to connect to; when empty, the port below is used.
  std::string connect_path;
  // virtio-serial port name, matched against /sys/class/virtio-ports/*/name.
  std::string port_name;
  // Where to look for ports; only tests point this elsewhere.
  std::string sysfs_dir = "/sys/class/virtio-ports";
};

struct OpenedChannel {
  UniqueFd fd;        // valid on success
  std::string error;  // why not, for the log, otherwise empty
};

// Device name (e.g. "vport0p1") of the port named `port_name` under
// `sysfs_dir`, or empty if there is none (yet: the driver may still load).
std::string FindVirtioPort(const std::string& sysfs_dir, const std::string& port_name);

// Opens the channel once. Never blocks: a unix connect that would wait is
// reported as an error, and the caller retries with backoff.
OpenedChannel OpenChannel(const ChannelSpec& spec);

}  // namespace cove::agent
