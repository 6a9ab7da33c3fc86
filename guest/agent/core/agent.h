// The agent's session loop: keeps a link to coved open for the life of the
// guest, answers the control protocol on stream 0, serves byte streams (exec,
// socket connections, reverse forwards) through a StreamMux, applies what
// each HostHello wants (mounts, services, reverse sockets, foreign
// binaries), and reconnects whenever the host goes away. What the guest
// reports, and the parts with fds and deadlines of their own, are Reporters
// (reporter.h) that the loop runs in the order of one list.
//
// Threading: one thread, one poll() loop; every wait is bounded (at most
// kMaxPollMs), so the loop also notices a stop request promptly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/link_frame.h"
#include "common/stream_mux.h"
#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/core/channel.h"
#include "guest/agent/core/control.h"
#include "guest/agent/core/link_connection.h"
#include "guest/agent/core/reporter.h"
#include "guest/agent/mounts/mounts_reporter.h"
#include "guest/agent/reports/emulation_reporter.h"
#include "guest/agent/reports/heartbeat.h"
#include "guest/agent/reports/listeners_reporter.h"
#include "guest/agent/reports/network_reporter.h"
#include "guest/agent/reports/oom_reporter.h"
#include "guest/agent/runtime/containers.h"
#include "guest/agent/runtime/services.h"
#include "guest/agent/runtime/services_reporter.h"
#include "guest/agent/streams/streams.h"

namespace cove::agent {

struct AgentOptions {
  ChannelSpec channel;
  int heartbeat_ms = 5000;
  // Signal init to power off on ShutdownRequest; false: exit 0 instead.
  bool poweroff = true;
  // Where supervised services write their output.
  std::string log_dir = "/var/log/cove";
  // The kernel log to read OOM kills from; empty: none (the agent runs on a
  // host, in tests).
  std::string kernel_log = "/dev/kmsg";
  // Told (a line written to this FIFO) when the host's services are all
  // ready: the image's rc.sysinit waits on it to start the boot work nothing
  // waits for (rc.ready) off the start's path. Empty: none.
  std::string runtime_ready_fifo = "/run/cove/runtime-ready";
  // Load the kernel modules a service will ask for before it does
  // (ServiceDef::modules): in a guest only.
  bool load_modules = true;
};

class Agent {
 public:
  // Reconnect backoff after a failed or dropped link: doubles from the
  // initial value up to the max, and starts over once a host says HostHello.
  static constexpr int kInitialBackoffMs = 100;
  static constexpr int kMaxBackoffMs = 1000;
  static constexpr int kMaxPollMs = 1000;
  // How long ShutdownAck may take to leave before the agent shuts down anyway.
  static constexpr int kShutdownFlushMs = 2000;
  // Encoded stream output is moved to the connection in batches of this much,
  // so the connection's own bound is never the one that trips.
  static constexpr size_t kOutputBatch = 256 * 1024;

  // `stop_fd` (not owned) becomes readable when the agent should exit, e.g.
  // a signalfd for SIGTERM and SIGINT; `child_fd` (not owned) when a child
  // process changed state (a signalfd for SIGCHLD).
  Agent(AgentOptions options, AgentIdentity identity, int stop_fd, int child_fd);

  // Serves until `stop_fd` is readable or, without poweroff, a
  // ShutdownRequest arrives. Returns the process exit code.
  int Run();

 private:
  enum class SessionEnd { kDropped, kStop, kShutdown };

  // State of one connection; a new connection starts a new one.
  struct Session final : Host {
    explicit Session(Agent& agent);
    bool connected() const override { return true; }
    bool greeted() const override { return hello_seen; }
    void Send(const v1::GuestToHost& message) override;

    link::StreamMux mux;
    StreamTable streams;
    std::vector<Reporter*> reporters;  // Agent::Reporters, with these streams
    bool hello_seen = false;           // a HostHello arrived on this connection
    uint64_t host_session = 0;         // the session it named
    bool shutdown_requested = false;
    bool reboot = false;
    std::string drop_reason;  // set when the link must be dropped
  };

  // The loop's parts, in the order they act (reporter.h); `session`'s
  // streams among them, if there is a session.
  std::vector<Reporter*> Reporters(Session* session);
  SessionEnd Serve(LinkConnection& conn);
  // Runs one poll() round; false when stop_fd fired.
  bool PollOnce(LinkConnection& conn, Session& session);
  // The agent's own fds: stop_fd (its caller asks it before any handler
  // runs) and child_fd.
  void AddSignalFds(PollSet& poll, Session* session);
  // The link's fd has `revents`: reads and handles frames, or flushes.
  void OnLinkReady(LinkConnection& conn, Session& session, short revents);
  void HandleFrame(const link::Frame& frame, Session& session);
  void HandleControl(const std::string& payload, Session& session);
  void HandleHostHello(const v1::HostHello& hello, Session& session);
  // A host's Refresh: fresh reports, then Refreshed.
  void Refresh(Session& session, uint64_t id);
  // Acknowledges and carries out a ShutdownRequest; true when the agent
  // should exit (--no-poweroff).
  bool ShutDown(LinkConnection& conn, Session& session);
  // Moves mux output to the connection and writes what it takes now.
  void Pump(LinkConnection& conn, Session& session);
  // Reaps exited children and hands each to its owner.
  void ReapChildren(Session* session);

  // Sleeps the current backoff, still supervising; false when stop_fd fired.
  bool SleepBackoff();
  // Logs a failure to reach the host unless `problem` repeats the previous
  // one, so an absent host does not flood the console once a second.
  // `detail` is logged but not compared.
  void NoteProblem(const std::string& problem, const std::string& detail);

  AgentOptions options_;
  AgentIdentity identity_;
  int stop_fd_;
  int child_fd_;
  Supervisor supervisor_;
  ServicesReporter services_{supervisor_, options_.runtime_ready_fifo};
  ListenersReporter listeners_;
  NetworkReporter network_;
  ContainerNames containers_;  // cgroup -> container, for kills and emulation
  EmulationReporter emulation_{containers_, listeners_.watcher()};
  MountsReporter mounts_{listeners_.watcher()};
  OomReporter oom_{options_.kernel_log, containers_, emulation_.emulation()};
  HeartbeatReporter heartbeat_{options_.heartbeat_ms, oom_};
  Session* current_ = nullptr;  // the live session, if any
  int backoff_ms_ = kInitialBackoffMs;
  std::string last_problem_;
};

}  // namespace cove::agent
