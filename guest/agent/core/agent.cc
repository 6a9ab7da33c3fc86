#include "guest/agent/core/agent.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

const char* FrameTypeName(link::FrameType type) {
  switch (type) {
    case link::FrameType::kControl:
      return "CONTROL";
    case link::FrameType::kOpen:
      return "OPEN";
    case link::FrameType::kData:
      return "DATA";
    case link::FrameType::kCloseWrite:
      return "CLOSE_WRITE";
    case link::FrameType::kReset:
      return "RESET";
    case link::FrameType::kCredit:
      return "CREDIT";
  }
  return "?";
}

// The host while the agent waits to reconnect: nobody to report to.
class NoHost final : public Host {
 public:
  bool connected() const override { return false; }
  bool greeted() const override { return false; }
  void Send(const v1::GuestToHost&) override {
    Log("bug: a report with no host connected");
    std::abort();
  }
};

}  // namespace

Agent::Agent(AgentOptions options, AgentIdentity identity, int stop_fd, int child_fd)
    : options_(std::move(options)),
      identity_(std::move(identity)),
      stop_fd_(stop_fd),
      child_fd_(child_fd),
      supervisor_(options_.log_dir, [this](const v1::ServiceStatus& status) {
        if (current_ != nullptr && current_->greeted()) {
          v1::GuestToHost msg;
          *msg.mutable_service_status() = status;
          current_->Send(msg);
        }
      }) {
  if (options_.load_modules) supervisor_.EnableModuleLoading();
}

std::vector<Reporter*> Agent::Reporters(Session* session) {
  // The order of their hooks within a round, at a session's start and on a
  // Refresh, and so of their messages.
  std::vector<Reporter*> list = {
      &heartbeat_,  // first: the kernel log is read right after each beat
      &services_,   // before the scans: the host waits for the runtime
      session != nullptr ? &session->streams : nullptr,
      &listeners_,
      &network_,
      &mounts_,  // watched directories
      &emulation_,
      &oom_,  // this boot's kills come last at a session's start
  };
  std::erase(list, nullptr);
  return list;
}

Agent::Session::Session(Agent& agent)
    : mux(link::StreamMux::Side::kGuest,
          link::StreamMux::Callbacks{
              .on_open =
                  [&agent](uint32_t id, const std::string& payload) {
                    agent.current_->streams.OnOpen(id, payload);
                  },
              .on_data = [&agent](
                             uint32_t id,
                             std::string_view data) { agent.current_->streams.OnData(id, data); },
              .on_close_write = [&agent](uint32_t id) { agent.current_->streams.OnCloseWrite(id); },
              .on_reset = [&agent](uint32_t id,
                                   const std::string&) { agent.current_->streams.OnReset(id); },
              .on_writable = nullptr,
              .on_output = nullptr,
          }),
      streams(mux),
      reporters(agent.Reporters(this)) {}

void Agent::Session::Send(const v1::GuestToHost& message) {
  mux.SendControl(message.SerializeAsString());
}

int Agent::Run() {
  const std::string channel_name = options_.channel.connect_path.empty()
                                       ? "virtio-serial port " + options_.channel.port_name
                                       : "unix socket " + options_.channel.connect_path;
  Log("cove-agent %s started (pid %u, %llu ms after boot) on %s", identity_.agent_version.c_str(),
      identity_.pid, static_cast<unsigned long long>(identity_.boot_to_agent_ms),
      channel_name.c_str());
  while (true) {
    OpenedChannel channel = OpenChannel(options_.channel);
    if (channel.fd.valid()) {
      LinkConnection conn(std::move(channel.fd));
      switch (Serve(conn)) {
        case SessionEnd::kStop:
          Log("stopping on signal");
          supervisor_.StopAll();
          return 0;
        case SessionEnd::kShutdown:
          supervisor_.StopAll();
          return 0;
        case SessionEnd::kDropped:
          break;
      }
    } else {
      NoteProblem(channel.error, "");
    }
    if (!SleepBackoff()) {
      Log("stopping on signal");
      supervisor_.StopAll();
      return 0;
    }
  }
}

Agent::SessionEnd Agent::Serve(LinkConnection& conn) {
  Session session(*this);
  current_ = &session;
  struct Clear {
    Agent* agent;
    ~Clear() { agent->current_ = nullptr; }
  } clear{this};
  // Unprompted, so a host already listening learns of the agent at once.
  session.Send(MakeHello(identity_, 0));
  Pump(conn, session);
  while (session.drop_reason.empty()) {
    if (!PollOnce(conn, session)) return SessionEnd::kStop;
    if (!session.drop_reason.empty()) break;
    if (session.shutdown_requested && ShutDown(conn, session)) return SessionEnd::kShutdown;
    for (Reporter* reporter : session.reporters) reporter->Tick(session);
    Pump(conn, session);
  }
  if (session.greeted()) {
    Log("host went away: %s; reconnecting", session.drop_reason.c_str());
  } else {
    // Typical of a port whose host side has no client yet; the detail
    // (EOF, hangup, reset) varies and would defeat the repeat filter.
    NoteProblem("channel closed before the handshake", session.drop_reason);
  }
  return SessionEnd::kDropped;
}

void Agent::Pump(LinkConnection& conn, Session& session) {
  // Flush first and re-check after every flush: a flush that empties the
  // queue makes room for more frames, and leaving them in the mux would
  // leave nothing to wake the poll (no POLLOUT is asked for an empty queue).
  while (session.drop_reason.empty()) {
    if (!conn.Flush()) {
      session.drop_reason = conn.error();
      return;
    }
    if (conn.queued() >= kOutputBatch || !session.mux.HasOutput()) return;
    if (!conn.SendEncoded(session.mux.TakeOutput(kOutputBatch - conn.queued()))) {
      session.drop_reason = conn.error();
      return;
    }
  }
}

bool Agent::PollOnce(LinkConnection& conn, Session& session) {
  PollSet poll;
  AddSignalFds(poll, &session);
  for (Reporter* reporter : session.reporters) reporter->Prepare(session, poll);
  poll.Add(conn.fd(), static_cast<short>(POLLIN | (conn.wants_write() ? POLLOUT : 0)),
           [&](short revents) { OnLinkReady(conn, session, revents); });
  if (poll.Wait(kMaxPollMs) < 0) {
    if (errno == EINTR) return true;
    // Cannot happen with valid fds; dropping the link re-creates them.
    session.drop_reason = std::string("poll: ") + std::strerror(errno);
    return true;
  }
  if (poll.revents(stop_fd_) & POLLIN) return false;
  poll.Dispatch();
  return true;
}

void Agent::AddSignalFds(PollSet& poll, Session* session) {
  poll.Add(stop_fd_, POLLIN, nullptr);
  poll.Add(child_fd_, POLLIN, [this, session](short revents) {
    if (revents & POLLIN) ReapChildren(session);
  });
}

void Agent::OnLinkReady(LinkConnection& conn, Session& session, short revents) {
  if (revents & POLLIN) {
    // Read before acting on POLLHUP: a peer that closed may have left data.
    if (!conn.Read()) {
      session.drop_reason = conn.error();
      return;
    }
    while (auto frame = conn.Next()) {
      HandleFrame(*frame, session);
      if (!session.drop_reason.empty()) return;
    }
  } else if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
    // A virtio-serial port reports POLLHUP for as long as the host side has
    // no client; poll() would return at once forever, so the link is dropped
    // and the caller sleeps before reopening.
    session.drop_reason =
        (revents & POLLHUP) ? "host closed the channel (hangup)" : "channel error";
    return;
  }
  if ((revents & POLLOUT) && !conn.Flush()) session.drop_reason = conn.error();
}

void Agent::Refresh(Session& session, uint64_t id) {
  if (session.greeted()) {  // before the hello there are no reports to refresh
    for (Reporter* reporter : session.reporters) reporter->OnRefresh(session);
  }
  v1::GuestToHost msg;
  msg.mutable_refreshed()->set_id(id);
  session.Send(msg);
}

void Agent::ReapChildren(Session* session) {
  signalfd_siginfo info;
  while (read(child_fd_, &info, sizeof(info)) == sizeof(info)) {
  }
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (session != nullptr && session->streams.OnChildExit(pid, status)) continue;
    // Processes of a dropped session, and failed execs, end up here too.
    supervisor_.OnChildExit(pid, status, NowMs());
  }
}

void Agent::HandleFrame(const link::Frame& frame, Session& session) {
  if (frame.stream_id == 0) {
    if (frame.type == link::FrameType::kControl) {
      HandleControl(frame.payload, session);
    } else {
      Log("ignoring a %s frame on the control stream", FrameTypeName(frame.type));
    }
    return;
  }
  if (!session.mux.OnFrame(frame)) {
    session.drop_reason = std::string("host broke the stream protocol (") +
                          FrameTypeName(frame.type) + " on stream " +
                          std::to_string(frame.stream_id) + ")";
  }
}

void Agent::HandleControl(const std::string& payload, Session& session) {
  v1::HostToGuest message;
  if (!message.ParseFromString(payload)) {
    Log("ignoring an unparseable control message (%zu bytes)", payload.size());
    return;
  }
  switch (message.msg_case()) {
    case v1::HostToGuest::kHostHello:
      HandleHostHello(message.host_hello(), session);
      break;
    case v1::HostToGuest::kShutdown:
      session.shutdown_requested = true;
      session.reboot = message.shutdown().reboot();
      break;
    case v1::HostToGuest::kExecResize:
      session.streams.Resize(message.exec_resize());
      break;
    case v1::HostToGuest::kExecSignal:
      session.streams.Signal(message.exec_signal());
      break;
    case v1::HostToGuest::kClockSync:
      CorrectClock(message.clock_sync().host_time_unix_ms());
      break;
    case v1::HostToGuest::kHostChanges:
      mounts_.OnHostChanges(message.host_changes());
      break;
    case v1::HostToGuest::kRefresh:
      Refresh(session, message.refresh().id());
      break;
    case v1::HostToGuest::MSG_NOT_SET:
      // A newer host's message kind: its field is unknown to this agent.
      Log("ignoring an unknown control message (%zu bytes)", payload.size());
      break;
  }
}

void Agent::HandleHostHello(const v1::HostHello& hello, Session& session) {
  if (hello.protocol_version() != kProtocolVersion) {
    // The host decides what to do with a mismatch; it sees ours in Hello.
    Log("host speaks protocol %u, agent %u", hello.protocol_version(), kProtocolVersion);
  }
  if (session.hello_seen && hello.session_id() != session.host_session) {
    // A new coved (or a new session of it) on a connection whose drop the
    // port never showed: this session's streams and reports belong to the
    // old one. Start over; coved says its HostHello again within a second.
    session.drop_reason = "the host began a new session";
    return;
  }
  session.Send(MakeHello(identity_, hello.session_id()));
  const bool first = !session.hello_seen;
  int64_t greeted_ms = 0;
  if (first) {
    session.host_session = hello.session_id();
    Log("connected to coved %s (session %llu)", hello.host_version().c_str(),
        static_cast<unsigned long long>(hello.session_id()));
    session.hello_seen = true;
    greeted_ms = NowMs();
  }
  // Mounts first: services (and their containers) may use the directories.
  mounts_.Apply(hello.mounts(), session);
  // Before the services too: their containers may be of another platform.
  emulation_.Configure(hello.foreign_binaries());
  session.streams.SetReverseSockets(std::vector<v1::ReverseSocket>(hello.reverse_sockets().begin(),
                                                                   hello.reverse_sockets().end()));
  // The host's view of the services and listeners is rebuilt from scratch
  // each session.
  if (first) {
    for (const v1::ServiceStatus& status : supervisor_.Statuses()) {
      v1::GuestToHost msg;
      *msg.mutable_service_status() = status;
      session.Send(msg);
    }
  }
  // The runtime first: the host waits for it, and the reports below (every
  // process's sockets, fds and executable) cost a few hundred ms at boot
  // under emulation.
  supervisor_.SetWanted(std::vector<std::string>(hello.services().begin(), hello.services().end()),
                        NowMs());
  if (first) {
    for (Reporter* reporter : session.reporters) reporter->OnSessionStart(greeted_ms, session);
  }
  backoff_ms_ = kInitialBackoffMs;
  last_problem_.clear();
}

bool Agent::ShutDown(LinkConnection& conn, Session& session) {
  session.shutdown_requested = false;
  session.Send(MakeShutdownAck());
  Pump(conn, session);
  if (session.drop_reason.empty() && !conn.FlushFor(kShutdownFlushMs)) {
    Log("ShutdownAck may not have reached the host: %s",
        conn.error().empty() ? "timed out" : conn.error().c_str());
  }
  sync();
  if (!options_.poweroff) {
    Log("%s requested; --no-poweroff given, exiting", session.reboot ? "reboot" : "power off");
    return true;
  }
  // The agent keeps serving until init stops it with the other processes.
  AskInitToShutDown(session.reboot);
  return false;
}

bool Agent::SleepBackoff() {
  const int64_t until = NowMs() + backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  // The runtime is supervised while the host is away, too.
  NoHost away;
  const std::vector<Reporter*> reporters = Reporters(nullptr);
  while (true) {
    if (NowMs() >= until) return true;
    PollSet poll;
    AddSignalFds(poll, nullptr);
    for (Reporter* reporter : reporters) reporter->Prepare(away, poll);
    poll.WakeBy(until);
    const int n = poll.Wait(kMaxPollMs);
    if (n > 0 && (poll.revents(stop_fd_) & POLLIN)) return false;
    if (n > 0) poll.Dispatch();
    for (Reporter* reporter : reporters) reporter->Tick(away);
  }
}

void Agent::NoteProblem(const std::string& problem, const std::string& detail) {
  if (problem == last_problem_) return;
  Log("cannot reach the host: %s%s%s (retrying, repeats not logged)", problem.c_str(),
      detail.empty() ? "" : ": ", detail.c_str());
  last_problem_ = problem;
}

}  // namespace cove::agent
