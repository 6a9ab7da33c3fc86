// Finding and opening the agent channel: the virtio-serial port that QEMU
// exposes for coved in the guest or, for tests and benchmarks on the host, a
// unix socket the agent connects to (--connect) or listens on (--listen).
// All give a non-blocking, close-on-exec byte stream fd.
#pragma once

#include <sys/types.h>

#include <string>

#include "guest/agent/core/unique_fd.h"

namespace cove::agent {

// How long OpenChannel waits for a host to connect to a listening socket
// before it reports that none did; the agent then sleeps its backoff and asks
// again. The same bound as the agent's other waits (Agent::kMaxPollMs).
inline constexpr int kAcceptWaitMs = 1000;

struct ChannelSpec {
  // Unix stream socket to connect to.
  std::string connect_path;
  // A listening socket (ChannelListener::fd(), not owned): each channel is
  // the next connection accepted on it. `listen_path` names it in messages.
  int listen_fd = -1;
  std::string listen_path;
  // Ends the wait for a connection on listen_fd early once readable (the
  // agent's stop signalfd, so that a stop is not held up). Not owned; -1 for
  // none.
  int wake_fd = -1;
  // virtio-serial port name, matched against /sys/class/virtio-ports/*/name;
  // used when neither connect_path nor listen_fd is set.
  std::string port_name;
  // Where to look for ports; only tests point this elsewhere.
  std::string sysfs_dir = "/sys/class/virtio-ports";
};

struct OpenedChannel {
  UniqueFd fd;        // valid on success
  std::string error;  // why not, for the log, otherwise empty
};

// The unix socket of --listen. Owns the listening fd and removes the socket
// file when destroyed (if the file is still the one it bound).
class ChannelListener {
 public:
  ChannelListener() = default;
  ~ChannelListener();
  ChannelListener(const ChannelListener&) = delete;
  ChannelListener& operator=(const ChannelListener&) = delete;

  // Binds `path` with mode 0600 and listens, non-blocking. A socket file
  // nobody listens on (left by a killed agent) is replaced; a live socket or
  // a file of another kind is not. Returns an error for the user, or empty.
  std::string Listen(const std::string& path);
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Device name (e.g. "vport0p1") of the port named `port_name` under
// `sysfs_dir`, or empty if there is none (yet: the driver may still load).
std::string FindVirtioPort(const std::string& sysfs_dir, const std::string& port_name);

// Opens the channel once. Bounded: a unix connect that would wait is
// reported as an error, and a listening socket is waited on for at most
// kAcceptWaitMs; the caller retries with backoff.
OpenedChannel OpenChannel(const ChannelSpec& spec);

}  // namespace cove::agent
