#include "guest/agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "guest/agent/log.h"
#include "guest/agent/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

bool StopRequested(int stop_fd, int timeout_ms) {
  pollfd pfd{stop_fd, POLLIN, 0};
  return poll(&pfd, 1, timeout_ms) > 0 && (pfd.revents & POLLIN);
}

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

Agent::Agent(AgentOptions options, AgentIdentity identity, int stop_fd)
    : options_(std::move(options)), identity_(std::move(identity)), stop_fd_(stop_fd) {}

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
          return 0;
        case SessionEnd::kShutdown:
          return 0;
        case SessionEnd::kDropped:
          break;
      }
    } else {
      NoteProblem(channel.error, "");
    }
    if (!SleepBackoff()) {
      Log("stopping on signal");
      return 0;
    }
  }
}

Agent::SessionEnd Agent::Serve(LinkConnection& conn) {
  Session session;
  // Unprompted, so a host already listening learns of the agent at once.
  SendOrDrop(conn, ControlFrame(MakeHello(identity_, 0)), session);
  while (session.drop_reason.empty()) {
    if (!PollOnce(conn, session)) return SessionEnd::kStop;
    if (!session.drop_reason.empty()) break;
    if (session.shutdown_requested && ShutDown(conn, session)) return SessionEnd::kShutdown;
    if (session.greeted && NowMs() >= session.next_heartbeat_ms) {
      SendOrDrop(conn, ControlFrame(MakeHeartbeat(++heartbeat_seq_)), session);
      // Skips missed beats (e.g. the VM was paused) rather than bursting them.
      session.next_heartbeat_ms =
          std::max(session.next_heartbeat_ms + options_.heartbeat_ms, NowMs() + 1);
    }
    if (session.drop_reason.empty() && conn.wants_write() && !conn.Flush()) {
      session.drop_reason = conn.error();
    }
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

bool Agent::PollOnce(LinkConnection& conn, Session& session) {
  int timeout = kMaxPollMs;
  if (session.greeted) {
    int64_t until_beat = session.next_heartbeat_ms - NowMs();
    timeout = static_cast<int>(std::clamp<int64_t>(until_beat, 0, kMaxPollMs));
  }
  pollfd fds[2] = {
      {conn.fd(), static_cast<short>(POLLIN | (conn.wants_write() ? POLLOUT : 0)), 0},
      {stop_fd_, POLLIN, 0},
  };
  int n = poll(fds, 2, timeout);
  if (n < 0) {
    if (errno == EINTR) return true;
    // Cannot happen with valid fds; dropping the link re-creates them.
    session.drop_reason = std::string("poll: ") + std::strerror(errno);
    return true;
  }
  if (fds[1].revents & POLLIN) return false;
  const short revents = fds[0].revents;
  if (revents & POLLIN) {
    // Read before acting on POLLHUP: a peer that closed may have left data.
    if (!conn.Read()) {
      session.drop_reason = conn.error();
      return true;
    }
    while (auto frame = conn.Next()) {
      HandleFrame(conn, *frame, session);
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

void Agent::HandleFrame(LinkConnection& conn, const link::Frame& frame, Session& session) {
  if (frame.stream_id == 0) {
    if (frame.type == link::FrameType::kControl) {
      HandleControl(conn, frame.payload, session);
    } else {
      Log("ignoring a %s frame on the control stream", FrameTypeName(frame.type));
    }
    return;
  }
  // Byte streams (exec, forwarded sockets) are not served yet: refuse each
  // OPEN so the host does not wait for an answer. Other frames can only
  // belong to streams that were refused, so they are dropped.
  if (frame.type == link::FrameType::kOpen) {
    link::Frame reset;
    reset.type = link::FrameType::kReset;
    reset.stream_id = frame.stream_id;
    SendOrDrop(conn, reset, session);
  }
}

void Agent::HandleControl(LinkConnection& conn, const std::string& payload, Session& session) {
  v1::HostToGuest message;
  if (!message.ParseFromString(payload)) {
    Log("ignoring an unparseable control message (%zu bytes)", payload.size());
    return;
  }
  switch (message.msg_case()) {
    case v1::HostToGuest::kHostHello:
      HandleHostHello(conn, message.host_hello(), session);
      break;
    case v1::HostToGuest::kShutdown:
      session.shutdown_requested = true;
      session.reboot = message.shutdown().reboot();
      break;
    case v1::HostToGuest::MSG_NOT_SET:
      // A newer host's message kind: its field is unknown to this agent.
      Log("ignoring an unknown control message (%zu bytes)", payload.size());
      break;
  }
}

void Agent::HandleHostHello(LinkConnection& conn, const v1::HostHello& hello, Session& session) {
  if (hello.protocol_version() != kProtocolVersion) {
    // The host decides what to do with a mismatch; it sees ours in Hello.
    Log("host speaks protocol %u, agent %u", hello.protocol_version(), kProtocolVersion);
  }
  SendOrDrop(conn, ControlFrame(MakeHello(identity_, hello.session_id())), session);
  CorrectClock(hello.host_time_unix_ms());
  if (!session.greeted) {
    Log("connected to coved %s (session %llu)", hello.host_version().c_str(),
        static_cast<unsigned long long>(hello.session_id()));
    session.greeted = true;
    session.next_heartbeat_ms = NowMs() + options_.heartbeat_ms;
  }
  backoff_ms_ = kInitialBackoffMs;
  last_problem_.clear();
}

bool Agent::ShutDown(LinkConnection& conn, Session& session) {
  session.shutdown_requested = false;
  SendOrDrop(conn, ControlFrame(MakeShutdownAck()), session);
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

void Agent::SendOrDrop(LinkConnection& conn, const link::Frame& frame, Session& session) {
  if (!session.drop_reason.empty()) return;
  if (!conn.Send(frame)) session.drop_reason = conn.error();
}

bool Agent::SleepBackoff() {
  bool stop = StopRequested(stop_fd_, backoff_ms_);
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
  return !stop;
}

void Agent::NoteProblem(const std::string& problem, const std::string& detail) {
  if (problem == last_problem_) return;
  Log("cannot reach the host: %s%s%s (retrying, repeats not logged)", problem.c_str(),
      detail.empty() ? "" : ": ", detail.c_str());
  last_problem_ = problem;
}

}  // namespace cove::agent
