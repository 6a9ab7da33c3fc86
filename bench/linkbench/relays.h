// What the benchmark compares: ways to carry a host unix socket connection
// to the sink. Each relay offers two host sockets, one leading to the sink's
// "in" socket (uploads) and one to its "out" socket (downloads).
//
// With --transport tcp, the host sockets and the sink are TCP ports on
// 127.0.0.1 and cove's side is a PortForwarder with static forwards (the
// port forwarding path) instead of SocketForwards.
//
//   CoveRelay:  host socket -> SocketForward -> AgentLink (in this process,
//               on an EventLoop thread) -> unix socket -> cove-agent --listen
//               (a child process) -> the sink. The agent link is the same
//               code coved runs; only the transport (a host unix socket
//               instead of QEMU's chardev) differs.
//   SocatRelay: socat UNIX-LISTEN:...,fork UNIX-CONNECT:<sink>, one process
//               per socket and a forked child per connection.
//
// Threading: construct, use and destroy on one thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/linkbench/traffic.h"

namespace cove::bench {

class Relay {
 public:
  virtual ~Relay() = default;
  virtual const std::string& name() const = 0;
  virtual const std::string& in_path() const = 0;
  virtual const std::string& out_path() const = 0;
  // CPU time (user + system) the relay used so far, in seconds. Call it once
  // the trial's connections closed.
  virtual double CpuSeconds() = 0;
};

// `agent` is the cove-agent binary; its log goes to `dir`/agent.log.
absl::StatusOr<std::unique_ptr<Relay>> StartCoveRelay(const std::string& agent,
                                                      const std::string& dir, const Sink& sink);

// `buffer` is socat's -b (0: socat's default, 8192 bytes). `tag` keeps the
// socket names of several socat relays apart.
absl::StatusOr<std::unique_ptr<Relay>> StartSocatRelay(const std::string& socat,
                                                       const std::string& dir,
                                                       const std::string& tag, size_t buffer,
                                                       const Sink& sink);

// A child process in its own process group, with stdout and stderr
// appended to `log`. Returns its pid.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log);
// SIGTERM to the child's process group, then waits for it (SIGKILL after 5 s).
void StopChild(pid_t pid);
// Waits up to 10 s for a unix socket file to appear at `path`.
absl::Status AwaitSocketFile(const std::string& path, pid_t owner);
// Waits up to 10 s for something to listen on 127.0.0.1:`port`.
absl::Status AwaitTcpListener(int port, pid_t owner);

}  // namespace cove::bench
