#include "guest/agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "guest/agent/exec.h"
#include "guest/agent/log.h"
#include "guest/agent/sysinfo.h"

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

}  // namespace

Agent::Agent(AgentOptions options, AgentIdentity identity, int stop_fd, int child_fd)
    : options_(std::move(options)),
      identity_(std::move(identity)),
      stop_fd_(stop_fd),
      child_fd_(child_fd),
      supervisor_(options_.log_dir, [this](const v1::ServiceStatus& status) {
        if (current_ != nullptr && current_->greeted) {
          v1::GuestToHost msg;
          *msg.mutable_service_status() = status;
          Send(*current_, msg);
        }
      }) {
  listeners_.OpenProcessEvents();
  if (!options_.kernel_log.empty()) oom_.Open(options_.kernel_log.c_str());
  if (options_.load_modules) supervisor_.EnableModuleLoading();
}

Agent::Session::Session(Agent& agent)
    : mux(link::StreamMux::Side::kGuest,
          link::StreamMux::Callbacks{
              .on_open = [&agent](
                             uint32_t id,
                             std::string payload) { agent.current_->streams.OnOpen(id, payload); },
              .on_data = [&agent](
                             uint32_t id,
                             std::string_view data) { agent.current_->streams.OnData(id, data); },
              .on_close_write = [&agent](uint32_t id) { agent.current_->streams.OnCloseWrite(id); },
              .on_reset = [&agent](uint32_t id,
                                   const std::string&) { agent.current_->streams.OnReset(id); },
              .on_writable = nullptr,
              .on_output = nullptr,
          }),
      streams(mux) {}

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
  Send(session, MakeHello(identity_, 0));
  Pump(conn, session);
  while (session.drop_reason.empty()) {
    if (!PollOnce(conn, session)) return SessionEnd::kStop;
    if (!session.drop_reason.empty()) break;
    if (session.shutdown_requested && ShutDown(conn, session)) return SessionEnd::kShutdown;
    if (session.greeted && NowMs() >= session.next_heartbeat_ms) {
      Send(session, MakeHeartbeat(++heartbeat_seq_));
      ReadKernelLog(&session);
      oom_names_until_ms_ = NowMs() + kOomNameTimeoutMs;
      for (v1::OomKill& kill : oom_.CheckCounters(static_cast<uint64_t>(ClockMs(CLOCK_BOOTTIME)))) {
        v1::GuestToHost msg;
        *msg.mutable_oom_kill() = std::move(kill);
        Send(session, msg);
      }
      // Skips missed beats (e.g. the VM was paused) rather than bursting them.
      session.next_heartbeat_ms =
          std::max(session.next_heartbeat_ms + options_.heartbeat_ms, NowMs() + 1);
    }
    supervisor_.Tick(NowMs());
    MaybeTellRuntimeReady();
    session.streams.Sweep();
    mounts_.Tick(NowMs());
    if (session.greeted) ReportListeners(session, false);
    // The listeners see every process event, also those drained while they
    // poll fast; the mounts' scan follows the same events.
    if (listeners_.last_process_event_ms() != process_event_ms_) {
      process_event_ms_ = listeners_.last_process_event_ms();
      mounts_.OnProcessEvents(process_event_ms_);
      emulation_.OnProcessEvent(process_event_ms_);
    }
    if (session.greeted) ReportWatchedDirs(session, false);
    if (session.greeted) ReportEmulation(session, Emulation::Want::kIfChanged);
    Pump(conn, session);
  }
  if (session.greeted) {
    Log("host went away: %s; reconnecting", session.drop_reason.c_str());
  } else {
    // Typical of a port whose host side has no client yet; the detail
    // (EOF, hangup, reset) varies and would defeat the repeat filter.
    NoteProblem("channel closed before the handshake", session.drop_reason);
  }
  return SessionEnd::kDropped;
}

void Agent::Send(Session& session, const v1::GuestToHost& message) {
  session.mux.SendControl(message.SerializeAsString());
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

int Agent::PollTimeoutMs(const Session* session) const {
  const int64_t now = NowMs();
  int64_t timeout = kMaxPollMs;
  if (session != nullptr && session->greeted) {
    timeout = std::min<int64_t>(timeout, session->next_heartbeat_ms - now);
  }
  const int64_t next = supervisor_.NextDeadlineMs();
  if (next != INT64_MAX) timeout = std::min<int64_t>(timeout, next - now);
  if (session != nullptr && session->greeted) {
    timeout = std::min<int64_t>(timeout, listeners_.next_due_ms() - now);
    timeout = std::min<int64_t>(timeout, mounts_.NextDueMs() - now);
    timeout = std::min<int64_t>(timeout, emulation_.NextDueMs() - now);
  }
  return static_cast<int>(std::clamp<int64_t>(timeout, 0, kMaxPollMs));
}

bool Agent::PollOnce(LinkConnection& conn, Session& session) {
  std::vector<pollfd> fds = {
      {conn.fd(), static_cast<short>(POLLIN | (conn.wants_write() ? POLLOUT : 0)), 0},
      {stop_fd_, POLLIN, 0},
      {child_fd_, POLLIN, 0},
  };
  std::vector<int> pidfds;
  supervisor_.CollectPollFds(pidfds);
  for (int fd : pidfds) fds.push_back({fd, POLLIN, 0});
  const size_t first_stream_fd = fds.size();
  session.streams.CollectPollFds(fds);
  // Process events: they only make the listener polling and the watched
  // directory scans come sooner.
  const int events_fd = session.greeted ? listeners_.PollFd(NowMs()) : -1;
  if (events_fd >= 0) fds.push_back({events_fd, POLLIN, 0});
  const int events_index = static_cast<int>(fds.size()) - 1;
  // Guest writes to cove mounts, for echo suppression.
  const int writes_fd = mounts_.PollFd(NowMs());
  if (writes_fd >= 0) fds.push_back({writes_fd, POLLIN, 0});
  const int writes_index = static_cast<int>(fds.size()) - 1;
  const int kmsg_fd = oom_.fd();
  if (kmsg_fd >= 0) fds.push_back({kmsg_fd, POLLIN, 0});
  int n = poll(fds.data(), fds.size(), PollTimeoutMs(&session));
  if (n < 0) {
    if (errno == EINTR) return true;
    // Cannot happen with valid fds; dropping the link re-creates them.
    session.drop_reason = std::string("poll: ") + std::strerror(errno);
    return true;
  }
  if (fds[1].revents & POLLIN) return false;
  if (fds[2].revents & POLLIN) ReapChildren(&session);
  for (size_t i = 3; i < first_stream_fd; i++) {
    if (fds[i].revents & POLLIN) supervisor_.OnPidfdReady(fds[i].fd, NowMs());
  }
  session.streams.Dispatch(fds, first_stream_fd);
  if (events_fd >= 0 && (fds[events_index].revents & POLLIN)) {
    listeners_.OnProcessEvents(NowMs());
  }
  if (writes_fd >= 0 && (fds[writes_index].revents & POLLIN)) mounts_.OnGuestWrites(NowMs());
  if (kmsg_fd >= 0 && (fds.back().revents & POLLIN)) ReadKernelLog(&session);
  const short revents = fds[0].revents;
  if (revents & POLLIN) {
    // Read before acting on POLLHUP: a peer that closed may have left data.
    if (!conn.Read()) {
      session.drop_reason = conn.error();
      return true;
    }
    while (auto frame = conn.Next()) {
      HandleFrame(*frame, session);
      if (!session.drop_reason.empty()) return true;
    }
  } else if (revents & (POLLHUP | POLLERR | POLLNVAL)) {
    // A virtio-serial port reports POLLHUP for as long as the host side has
    // no client; poll() would return at once forever, so the link is dropped
    // and the caller sleeps before reopening.
    session.drop_reason =
        (revents & POLLHUP) ? "host closed the channel (hangup)" : "channel error";
    return true;
  }
  if ((revents & POLLOUT) && !conn.Flush()) session.drop_reason = conn.error();
  return true;
}

void Agent::ReportListeners(Session& session, bool force) {
  if (!listeners_.Refresh(NowMs(), force) && !force) return;
  v1::GuestToHost msg;
  v1::Listeners* out = msg.mutable_listeners();
  out->set_generation(listeners_.generation());
  for (const ListenerInfo& l : listeners_.listeners()) {
    v1::Listener* item = out->add_listeners();
    item->set_proto(l.proto == ListenerInfo::Proto::kTcp ? v1::PROTO_TCP : v1::PROTO_UDP);
    item->set_address(l.address);
    item->set_port(l.port);
    item->set_v6only(l.v6only);
  }
  Send(session, msg);
}

void Agent::ReportWatchedDirs(Session& session, bool force) {
  for (v1::WatchedDirs& dirs : mounts_.TakeWatchedDirs(NowMs(), force)) {
    v1::GuestToHost msg;
    *msg.mutable_watched_dirs() = std::move(dirs);
    Send(session, msg);
  }
}

void Agent::ReportEmulation(Session& session, Emulation::Want want) {
  if (auto report = emulation_.Take(NowMs(), want, containers_)) {
    v1::GuestToHost msg;
    *msg.mutable_emulation() = std::move(*report);
    Send(session, msg);
  }
}

void Agent::Refresh(Session& session, uint64_t id) {
  if (session.greeted) {  // before the hello there are no reports to refresh
    Send(session, MakeHeartbeat(++heartbeat_seq_));
    ReadKernelLog(&session);
    ReportListeners(session, true);
    ReportEmulation(session, Emulation::Want::kRefresh);
  }
  v1::GuestToHost msg;
  msg.mutable_refreshed()->set_id(id);
  Send(session, msg);
}

void Agent::ReadKernelLog(Session* session) {
  oom_names_until_ms_ = NowMs() + kOomNameTimeoutMs;
  for (v1::OomKill& kill : oom_.OnReadable()) {
    if (session == nullptr || !session->greeted) continue;  // in the history for the next one
    v1::GuestToHost msg;
    *msg.mutable_oom_kill() = std::move(kill);
    Send(*session, msg);
  }
}

void Agent::EnrichOomKill(v1::OomKill& kill) {
  kill.set_mem_total_bytes(ReadMemInfo().total_bytes);
  // Longer than a scan's ask: dockerd is busy with this very container's
  // exit. One budget for all the kills of one read, though.
  const int ask_ms = static_cast<int>(
      std::clamp<int64_t>(oom_names_until_ms_ - NowMs(), 0, kOomNameTimeoutMs));
  if (auto container =
          containers_.Resolve(kill.task_cgroup(), ask_ms, ContainerNames::Wait::kSkipIfSilent)) {
    kill.set_container_id(container->id);
    kill.set_container_name(container->name);
  }
  kill.set_emulated_arch(emulation_.ArchOf(kill.pid()));
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
  if (session.greeted && hello.session_id() != session.host_session) {
    // A new coved (or a new session of it) on a connection whose drop the
    // port never showed: this session's streams and reports belong to the
    // old one. Start over; coved says its HostHello again within a second.
    session.drop_reason = "the host began a new session";
    return;
  }
  Send(session, MakeHello(identity_, hello.session_id()));
  const bool first = !session.greeted;
  if (first) {
    session.host_session = hello.session_id();
    Log("connected to coved %s (session %llu)", hello.host_version().c_str(),
        static_cast<unsigned long long>(hello.session_id()));
    session.greeted = true;
    session.next_heartbeat_ms = NowMs() + options_.heartbeat_ms;
  }
  // Mounts first: services (and their containers) may use the directories.
  for (v1::MountStatus& status :
       mounts_.Apply(std::vector<v1::GuestMount>(hello.mounts().begin(), hello.mounts().end()))) {
    v1::GuestToHost msg;
    *msg.mutable_mount_status() = std::move(status);
    Send(session, msg);
  }
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
      Send(session, msg);
    }
  }
  // The runtime first: the host waits for it, and the scans below (every
  // process's sockets, fds and executable) cost a few hundred ms at boot
  // under emulation.
  supervisor_.SetWanted(std::vector<std::string>(hello.services().begin(), hello.services().end()),
                        NowMs());
  if (first) ReportListeners(session, true);
  if (first) ReportWatchedDirs(session, true);
  if (first) ReportEmulation(session, Emulation::Want::kAlways);
  if (first) {
    // This boot's kills, for a host that was away; then whatever is new.
    ReadKernelLog(nullptr);
    for (v1::OomKill& kill : oom_.History()) {
      v1::GuestToHost msg;
      *msg.mutable_oom_kill() = std::move(kill);
      Send(session, msg);
    }
  }
  backoff_ms_ = kInitialBackoffMs;
  last_problem_.clear();
}

bool Agent::ShutDown(LinkConnection& conn, Session& session) {
  session.shutdown_requested = false;
  Send(session, MakeShutdownAck());
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
  // busybox init: SIGUSR2 powers off, SIGTERM reboots. The agent keeps
  // serving until init stops it with the other processes. The marker file
  // tells the image's rc.shutdown to power off at once after a clean
  // unmount instead of waiting out busybox init's grace sleeps.
  if (!session.reboot) {
    int marker = open("/run/cove/poweroff-requested", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (marker >= 0) close(marker);
  }
  const int sig = session.reboot ? SIGTERM : SIGUSR2;
  if (kill(1, sig) != 0) {
    Log("cannot signal init to %s: %s", session.reboot ? "reboot" : "power off",
        std::strerror(errno));
  } else {
    Log("asked init to %s", session.reboot ? "reboot" : "power off");
  }
  return false;
}

bool Agent::SleepBackoff() {
  const int64_t until = NowMs() + backoff_ms_;
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  // The runtime is supervised while the host is away, too.
  while (true) {
    const int64_t now = NowMs();
    if (now >= until) return true;
    int timeout = static_cast<int>(std::min<int64_t>(until - now, PollTimeoutMs(nullptr)));
    std::vector<int> pidfds;
    supervisor_.CollectPollFds(pidfds);
    std::vector<pollfd> fds = {{stop_fd_, POLLIN, 0}, {child_fd_, POLLIN, 0}};
    for (int fd : pidfds) fds.push_back({fd, POLLIN, 0});
    int n = poll(fds.data(), fds.size(), timeout);
    if (n > 0 && (fds[0].revents & POLLIN)) return false;
    if (n > 0 && (fds[1].revents & POLLIN)) ReapChildren(nullptr);
    for (size_t i = 2; n > 0 && i < fds.size(); i++) {
      if (fds[i].revents & POLLIN) supervisor_.OnPidfdReady(fds[i].fd, NowMs());
    }
    supervisor_.Tick(NowMs());
    MaybeTellRuntimeReady();
  }
}

void Agent::MaybeTellRuntimeReady() {
  if (runtime_ready_told_ || options_.runtime_ready_fifo.empty()) return;
  if (!supervisor_.AllWantedReady()) return;
  runtime_ready_told_ = true;
  // Non-blocking: with no reader (it timed out, or an earlier agent of this
  // boot told it) there is nothing to tell.
  UniqueFd fifo(open(options_.runtime_ready_fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (fifo.valid() && write(fifo.get(), "ready\n", 6) == 6) Log("runtime ready: boot work resumes");
}

void Agent::NoteProblem(const std::string& problem, const std::string& detail) {
  if (problem == last_problem_) return;
  Log("cannot reach the host: %s%s%s (retrying, repeats not logged)", problem.c_str(),
      detail.empty() ? "" : ": ", detail.c_str());
  last_problem_ = problem;
}

}  // namespace cove::agent
