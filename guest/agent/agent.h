// The agent's session loop: keeps a link to coved open for the life of the
// guest, answers the control protocol on stream 0, serves byte streams (exec,
// socket connections, reverse forwards) through a StreamMux, supervises the
// container runtime, mounts the host directories HostHello lists, and
// reconnects whenever the host goes away.
//
// Threading: one thread, one poll() loop; every wait is bounded (at most
// kMaxPollMs), so the loop also notices a stop request promptly.
#pragma once

#include <cstdint>
#include <string>

#include "common/link_frame.h"
#include "common/stream_mux.h"
#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/containers.h"
#include "guest/agent/control.h"
#include "guest/agent/emulation.h"
#include "guest/agent/link_connection.h"
#include "guest/agent/listeners.h"
#include "guest/agent/mounts.h"
#include "guest/agent/oom_watch.h"
#include "guest/agent/port.h"
#include "guest/agent/services.h"
#include "guest/agent/streams.h"

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
  static constexpr int kOomNameTimeoutMs = 1000;  // asking dockerd a killed container's name
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
  struct Session {
    explicit Session(Agent& agent);
    link::StreamMux mux;
    StreamTable streams;
    bool greeted = false;       // a HostHello arrived on this connection
    uint64_t host_session = 0;  // the session it named
    int64_t next_heartbeat_ms = 0;
    bool shutdown_requested = false;
    bool reboot = false;
    std::string drop_reason;  // set when the link must be dropped
  };

  SessionEnd Serve(LinkConnection& conn);
  // Runs one poll() round; false when stop_fd fired.
  bool PollOnce(LinkConnection& conn, Session& session);
  void HandleFrame(const link::Frame& frame, Session& session);
  void HandleControl(const std::string& payload, Session& session);
  void HandleHostHello(const v1::HostHello& hello, Session& session);
  // Acknowledges and carries out a ShutdownRequest; true when the agent
  // should exit (--no-poweroff).
  bool ShutDown(LinkConnection& conn, Session& session);
  void Send(Session& session, const v1::GuestToHost& message);
  // Moves mux output to the connection and writes what it takes now.
  void Pump(LinkConnection& conn, Session& session);
  // Reaps exited children and hands each to its owner.
  void ReapChildren(Session* session);
  int PollTimeoutMs(const Session* session) const;
  // Lists the guest's listeners when due (or `force`) and sends them when
  // they changed (or `force`), for automatic port forwarding.
  void ReportListeners(Session& session, bool force);
  // Scans for watched directories in cove mounts when due (or `force`) and
  // sends the sets that changed (all with `force`).
  // Sends the foreign-binary report when it changed (or `force`).
  void ReportEmulation(Session& session, Emulation::Want want);
  // A host's Refresh: fresh reports, then Refreshed.
  void Refresh(Session& session, uint64_t id);
  void ReportWatchedDirs(Session& session, bool force);
  // Reads the kernel log; kills go to the host when a session is greeted.
  void ReadKernelLog(Session* session);
  void EnrichOomKill(v1::OomKill& kill);

  // Tells options_.runtime_ready_fifo, once, when the services are ready.
  void MaybeTellRuntimeReady();
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
  ListenerWatcher listeners_;
  Emulation emulation_;         // binfmt handlers: registered once, for the boot
  ContainerNames containers_;   // cgroup -> container, for kills and emulation
  OomWatch oom_{[this](v1::OomKill& kill) { EnrichOomKill(kill); }};
  CoveMounts mounts_;           // mounts outlive sessions: they last for the boot
  Session* current_ = nullptr;  // the live session, if any
  uint64_t heartbeat_seq_ = 0;
  int backoff_ms_ = kInitialBackoffMs;
  // The last process event handed to mounts_.
  int64_t process_event_ms_ = 0;
  std::string last_problem_;
  bool runtime_ready_told_ = false;
  int64_t oom_names_until_ms_ = 0;  // the current read's budget for naming containers
};

}  // namespace cove::agent
