// Runs the real cove-agent binary with --connect against a unix socket that
// the test listens on, and plays coved's part of the agent link.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "agent_harness.h"

namespace cove::agent::test {
namespace {

using v1::GuestToHost;

// Generous for a loaded CI machine; a healthy run takes milliseconds.
constexpr int kTimeoutMs = 5000;

v1::HostToGuest HostHello(uint64_t session_id) {
  v1::HostToGuest message;
  auto* hello = message.mutable_host_hello();
  hello->set_protocol_version(1);
  hello->set_host_version("test");
  hello->set_session_id(session_id);
  // The current time, so the agent (run as root here) never sets the clock.
  hello->set_host_time_unix_ms(UnixMs());
  return message;
}

v1::HostToGuest Shutdown(bool reboot) {
  v1::HostToGuest message;
  message.mutable_shutdown()->set_reboot(reboot);
  return message;
}

// Reads the next Hello and checks what the agent says about itself.
void ExpectHello(HostPeer& host, const AgentProcess& agent, uint64_t session_id) {
  auto message = host.ReadUntil(GuestToHost::kHello, kTimeoutMs);
  INFO(host.last_error());
  REQUIRE(message);
  const v1::Hello& hello = message->hello();
  CHECK(hello.session_id() == session_id);
  CHECK(hello.protocol_version() == 1);
  CHECK(hello.agent_version() == COVE_VERSION);
  utsname u{};
  REQUIRE(uname(&u) == 0);
  CHECK(hello.kernel_release() == u.release);
  CHECK(hello.arch() == u.machine);
  CHECK(hello.agent_pid() == static_cast<uint32_t>(agent.pid()));
  CHECK(hello.boot_to_agent_ms() > 0);
  CHECK(hello.uptime_ms() >= hello.boot_to_agent_ms());
}

// Accepts a connection, reads the unprompted Hello and completes the
// handshake for `session_id`.
void Handshake(HostPeer& host, const AgentProcess& agent, uint64_t session_id) {
  INFO(host.last_error());
  REQUIRE(host.Accept(kTimeoutMs));
  ExpectHello(host, agent, 0);
  host.Send(HostHello(session_id));
  ExpectHello(host, agent, session_id);
}

void ExpectCleanExit(AgentProcess& agent) {
  auto status = agent.WaitExit(kTimeoutMs);
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

}  // namespace

TEST_CASE("agent handshakes, beats, reconnects and shuts down", "[agent][session]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--heartbeat-ms", "50", "--no-poweroff"});

  Handshake(host, agent, 42);

  // Heartbeats follow the handshake, numbered upwards, with real figures.
  auto first = host.ReadUntil(GuestToHost::kHeartbeat, kTimeoutMs);
  INFO(host.last_error());
  REQUIRE(first);
  auto second = host.ReadUntil(GuestToHost::kHeartbeat, kTimeoutMs);
  REQUIRE(second);
  CHECK(second->heartbeat().seq() > first->heartbeat().seq());
  CHECK(second->heartbeat().uptime_ms() >= first->heartbeat().uptime_ms());
  CHECK(first->heartbeat().mem_total_bytes() > 0);
  CHECK(first->heartbeat().mem_available_bytes() > 0);
  CHECK(first->heartbeat().mem_available_bytes() <= first->heartbeat().mem_total_bytes());

  // coved goes away: the agent must come back on its own and greet again.
  host.CloseConnection();
  Handshake(host, agent, 43);
  auto after = host.ReadUntil(GuestToHost::kHeartbeat, kTimeoutMs);
  REQUIRE(after);
  CHECK(after->heartbeat().seq() > second->heartbeat().seq());

  host.Send(Shutdown(false));
  auto ack = host.ReadUntil(GuestToHost::kShutdownAck, kTimeoutMs);
  REQUIRE(ack);
  ExpectCleanExit(agent);
}

TEST_CASE("agent acknowledges a reboot request with --no-poweroff", "[agent][session]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  host.Send(Shutdown(true));
  REQUIRE(host.ReadUntil(GuestToHost::kShutdownAck, kTimeoutMs));
  ExpectCleanExit(agent);
}

TEST_CASE("agent ignores messages it does not understand", "[agent][session]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 7);

  link::Frame garbage;
  garbage.type = link::FrameType::kControl;
  garbage.payload = "\xff\xff\xff\xff";
  host.SendFrame(garbage);
  // A HostToGuest from a newer host: oneof field 99 (varint 1) is unknown.
  link::Frame unknown;
  unknown.type = link::FrameType::kControl;
  unknown.payload = std::string("\x98\x06\x01", 3);
  host.SendFrame(unknown);
  link::Frame data_on_control;
  data_on_control.type = link::FrameType::kData;
  data_on_control.payload = "x";
  host.SendFrame(data_on_control);

  // The link is still up and the same session answers.
  host.Send(HostHello(7));
  auto hello = host.ReadUntil(GuestToHost::kHello, kTimeoutMs);
  INFO(host.last_error());
  REQUIRE(hello);
  CHECK(hello->hello().session_id() == 7);
}

TEST_CASE("agent resets streams it cannot serve", "[agent][session][streams]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);

  link::Frame data;
  data.type = link::FrameType::kData;
  data.stream_id = 9;
  data.payload = "for nobody";
  host.SendFrame(data);
  link::Frame open;
  open.type = link::FrameType::kOpen;
  open.stream_id = 11;
  open.payload = "\xff\xff not a StreamOpen";
  host.SendFrame(open);

  std::map<uint32_t, std::string> resets;
  while (resets.size() < 2) {
    auto frame = host.ReadFrame(kTimeoutMs);
    INFO(host.last_error());
    REQUIRE(frame);
    if (frame->type == link::FrameType::kControl) continue;  // heartbeats
    REQUIRE(frame->type == link::FrameType::kReset);
    resets[frame->stream_id] = frame->payload;
  }
  CHECK(resets[9] == "unknown stream");
  CHECK(resets[11] == "unparseable OPEN payload");
}

TEST_CASE("agent runs an exec: stdin, stdout, stderr apart, exit status",
          "[agent][session][streams]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);

  v1::StreamOpen what;
  auto* exec = what.mutable_exec();
  exec->add_argv("sh");
  exec->add_argv("-c");
  exec->add_argv("read line; echo \"got $line\"; echo oops >&2; exit 3");
  host.SendFrame(link::Frame{link::FrameType::kOpen, 1, what.SerializeAsString()});
  host.SendFrame(link::Frame{link::FrameType::kData, 1, "hello\n"});
  host.SendFrame(link::Frame{link::FrameType::kCloseWrite, 1, ""});

  uint32_t stderr_id = 0;
  std::map<uint32_t, std::string> output;
  std::set<uint32_t> closed;
  std::optional<v1::ExecExited> exited;
  while (!exited || closed.size() < 2) {
    auto frame = host.ReadFrame(kTimeoutMs);
    INFO(host.last_error());
    REQUIRE(frame);
    switch (frame->type) {
      case link::FrameType::kControl: {
        v1::GuestToHost msg;
        REQUIRE(msg.ParseFromString(frame->payload));
        if (msg.has_exec_exited()) exited = msg.exec_exited();
        break;
      }
      case link::FrameType::kOpen: {
        v1::StreamOpen opened;
        REQUIRE(opened.ParseFromString(frame->payload));
        CHECK(opened.exec_stderr_of() == 1u);
        CHECK(frame->stream_id % 2 == 0);  // the agent's ids are even
        stderr_id = frame->stream_id;
        break;
      }
      case link::FrameType::kData:
        output[frame->stream_id] += frame->payload;
        break;
      case link::FrameType::kCloseWrite:
        closed.insert(frame->stream_id);
        break;
      default:
        FAIL("unexpected frame type " << static_cast<int>(frame->type));
    }
  }
  REQUIRE(stderr_id != 0);
  CHECK(output[1] == "got hello\n");
  CHECK(output[stderr_id] == "oops\n");
  CHECK(closed == std::set<uint32_t>{1, stderr_id});
  CHECK(exited->stream_id() == 1u);
  CHECK(exited->exit_code() == 3);
  CHECK(exited->error().empty());
}

TEST_CASE("an exec that cannot start reports why, with exit code 127",
          "[agent][session][streams]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  v1::StreamOpen what;
  what.mutable_exec()->add_argv("/nonexistent/command");
  host.SendFrame(link::Frame{link::FrameType::kOpen, 3, what.SerializeAsString()});
  auto message = host.ReadUntil(GuestToHost::kExecExited, kTimeoutMs);
  INFO(host.last_error());
  REQUIRE(message);
  CHECK(message->exec_exited().stream_id() == 3u);
  CHECK(message->exec_exited().exit_code() == 127);
  CHECK(message->exec_exited().error() == "/nonexistent/command: No such file or directory");
}

TEST_CASE("a broken frame stream drops the link and the agent reconnects", "[agent][session]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  host.SendRaw("this is not a frame header");
  // The agent closes its end...
  while (host.ReadFrame(kTimeoutMs)) {
  }
  CHECK(host.last_error() == "agent closed the connection");
  // ...and comes back with a fresh Hello.
  Handshake(host, agent, 2);
}

TEST_CASE("a HostHello naming a new session makes the agent start over and report again",
          "[agent][session]") {
  // A new coved on a connection whose drop the agent never saw: what the
  // agent reported belongs to the old session.
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  host.Send(HostHello(2));
  while (host.ReadFrame(kTimeoutMs)) {
  }
  CHECK(host.last_error() == "agent closed the connection");
  Handshake(host, agent, 2);
  INFO(host.last_error());
  CHECK(host.ReadUntil(GuestToHost::kListeners, kTimeoutMs));
}

TEST_CASE("a Refresh is answered with a heartbeat, the listeners and the network, then Refreshed",
          "[agent][session]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  INFO(host.last_error());
  REQUIRE(host.ReadUntil(GuestToHost::kListeners, kTimeoutMs));  // the session's start
  v1::HostToGuest refresh;
  refresh.mutable_refresh()->set_id(77);
  host.Send(refresh);
  // Listeners may also come when this machine's sockets change; the refresh's
  // come after its heartbeat.
  std::vector<GuestToHost::MsgCase> seen;
  while (true) {
    auto message = host.ReadControl(kTimeoutMs);
    REQUIRE(message);
    if (message->has_refreshed()) {
      CHECK(message->refreshed().id() == 77u);
      break;
    }
    seen.push_back(message->msg_case());
  }
  auto beat = std::find(seen.begin(), seen.end(), GuestToHost::kHeartbeat);
  REQUIRE(beat != seen.end());
  CHECK(std::find(beat, seen.end(), GuestToHost::kListeners) != seen.end());
  CHECK(std::find(beat, seen.end(), GuestToHost::kNetwork) != seen.end());
}

TEST_CASE("agent exits 0 on SIGTERM and SIGINT", "[agent][session]") {
  for (int sig : {SIGTERM, SIGINT}) {
    HostPeer host;
    AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
    Handshake(host, agent, 1);
    agent.Signal(sig);
    ExpectCleanExit(agent);
  }
}

TEST_CASE("agent exits 0 on SIGTERM while waiting to reconnect", "[agent][session]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  // The unprompted Hello shows the agent is up, with its signals handled.
  INFO(host.last_error());
  REQUIRE(host.Accept(kTimeoutMs));
  REQUIRE(host.ReadUntil(GuestToHost::kHello, kTimeoutMs));
  host.CloseConnection();
  agent.Signal(SIGTERM);
  ExpectCleanExit(agent);
}

TEST_CASE("an absent host makes the agent back off, not spin", "[agent][session]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  // A host that hangs up at once, like a chardev without a client. Backoff
  // doubles from 100 ms, so 6 connections take at least
  // 100+200+400+800+1000 ms.
  const int64_t start = MonotonicMs();
  for (int i = 0; i < 6; ++i) {
    INFO("connection " << i << ": " << host.last_error());
    REQUIRE(host.Accept(kTimeoutMs));
    host.CloseConnection();
  }
  const int64_t elapsed = MonotonicMs() - start;
  CHECK(elapsed >= 2000);
  // A spinning agent would use about all of that time on the CPU.
  const long ticks = agent.CpuTicks();
  const long ticks_per_s = sysconf(_SC_CLK_TCK);
  INFO("agent used " << ticks << " ticks over " << elapsed << " ms");
  CHECK(ticks * 1000 / ticks_per_s < elapsed / 10);
}

TEST_CASE("cove-agent rejects bad flags with exit 2", "[agent][flags]") {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--bogus"}, {"--heartbeat-ms", "soon"}, {"--connect"}, {"extra"}}) {
    AgentProcess agent(args);
    auto status = agent.WaitExit(kTimeoutMs);
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 2);
  }
  AgentProcess version({"--version"});
  auto status = version.WaitExit(kTimeoutMs);
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

namespace {

// A socket of `type` bound to 127.0.0.1 on a free port (listening for TCP).
std::pair<int, uint16_t> BindLoopback(int type) {
  const int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  if (type == SOCK_STREAM) REQUIRE(listen(fd, 8) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  return {fd, ntohs(addr.sin_port)};
}

bool HasListener(const v1::Listeners& set, v1::Proto proto, uint16_t port) {
  for (const v1::Listener& l : set.listeners()) {
    if (l.proto() == proto && l.port() == port && l.address() == "127.0.0.1") return true;
  }
  return false;
}

// Reads Listeners messages until `want` says yes, at most kTimeoutMs.
std::optional<v1::Listeners> AwaitListeners(HostPeer& host,
                                            const std::function<bool(const v1::Listeners&)>& want) {
  while (auto msg = host.ReadUntil(GuestToHost::kListeners, kTimeoutMs)) {
    if (want(msg->listeners())) return msg->listeners();
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("agent reports listening TCP and bound UDP sockets as they come and go",
          "[agent][session][ports]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  // The first set comes with the handshake, whatever it holds.
  auto first = host.ReadUntil(GuestToHost::kListeners, kTimeoutMs);
  INFO(host.last_error());
  REQUIRE(first);

  auto [tcp, tcp_port] = BindLoopback(SOCK_STREAM);
  auto [udp, udp_port] = BindLoopback(SOCK_DGRAM);
  auto seen = AwaitListeners(host, [&](const v1::Listeners& s) {
    return HasListener(s, v1::PROTO_TCP, tcp_port) && HasListener(s, v1::PROTO_UDP, udp_port);
  });
  REQUIRE(seen);
  CHECK(seen->generation() > first->listeners().generation());

  close(tcp);
  close(udp);
  auto gone = AwaitListeners(host, [&](const v1::Listeners& s) {
    return !HasListener(s, v1::PROTO_TCP, tcp_port) && !HasListener(s, v1::PROTO_UDP, udp_port);
  });
  CHECK(gone);
}

TEST_CASE("agent marks IPv6-only listeners", "[agent][session][ports]") {
  // Two TCP listeners on ::, one IPv6 only; skipped where this host has no IPv6.
  auto listen6 = [](int v6only) -> std::pair<int, uint16_t> {
    const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return {-1, 0};
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close(fd);
      return {-1, 0};
    }
    return {fd, ntohs(addr.sin6_port)};
  };
  auto [only6, only6_port] = listen6(1);
  auto [dual, dual_port] = listen6(0);
  if (only6 < 0 || dual < 0) {
    WARN("no IPv6 on this host; not tested");
    return;
  }
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  auto flag = [](const v1::Listeners& s, uint16_t port) -> std::optional<bool> {
    for (const v1::Listener& l : s.listeners()) {
      if (l.proto() == v1::PROTO_TCP && l.port() == port && l.address() == "::") return l.v6only();
    }
    return std::nullopt;
  };
  auto seen = AwaitListeners(
      host, [&](const v1::Listeners& s) { return flag(s, only6_port) && flag(s, dual_port); });
  REQUIRE(seen);
  CHECK(*flag(*seen, only6_port));
  CHECK_FALSE(*flag(*seen, dual_port));
  close(only6);
  close(dual);
}

TEST_CASE("a UDP stream carries datagrams both ways", "[agent][session][ports]") {
  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  Handshake(host, agent, 1);
  auto [server, port] = BindLoopback(SOCK_DGRAM);

  v1::StreamOpen what;
  what.mutable_net_connect()->set_proto(v1::PROTO_UDP);
  what.mutable_net_connect()->set_address("0.0.0.0");  // reached on the loopback
  what.mutable_net_connect()->set_port(port);
  host.SendFrame(link::Frame{link::FrameType::kOpen, 1, what.SerializeAsString()});
  // Two datagrams in one DATA frame, the second split across two frames.
  const std::string two = std::string("\0\5hello\0\5", 9);
  host.SendFrame(link::Frame{link::FrameType::kData, 1, two});
  host.SendFrame(link::Frame{link::FrameType::kData, 1, "world"});

  char buf[64];
  sockaddr_in from{};
  socklen_t from_len = sizeof(from);
  timeval tv{5, 0};
  setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  REQUIRE(recvfrom(server, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len) ==
          5);
  CHECK(std::string(buf, 5) == "hello");
  REQUIRE(recv(server, buf, sizeof(buf), 0) == 5);
  CHECK(std::string(buf, 5) == "world");
  REQUIRE(sendto(server, "pong!!", 6, 0, reinterpret_cast<sockaddr*>(&from), from_len) == 6);

  std::string got;
  while (got.size() < 8) {
    auto frame = host.ReadFrame(kTimeoutMs);
    INFO(host.last_error());
    REQUIRE(frame);
    if (frame->type == link::FrameType::kControl) continue;
    REQUIRE(frame->type == link::FrameType::kData);
    REQUIRE(frame->stream_id == 1u);
    got += frame->payload;
  }
  CHECK(got == std::string("\0\6pong!!", 8));
  close(server);
}

TEST_CASE("a mount of a tag that no device has is answered with mounted=false and why",
          "[agent][session][mounts]") {
  char tmpl[] = "/tmp/cove-agent-mount-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::system(("rm -rf '" + dir + "'").c_str()); }
  } cleanup{dir};

  HostPeer host;
  AgentProcess agent({"--connect", host.socket_path(), "--no-poweroff"});
  INFO(host.last_error());
  REQUIRE(host.Accept(kTimeoutMs));
  ExpectHello(host, agent, 0);
  v1::HostToGuest hello = HostHello(5);
  v1::GuestMount* mount = hello.mutable_host_hello()->add_mounts();
  mount->set_tag("cove-test-no-such-tag");
  mount->set_guest_path(dir + "/home/u");
  mount->set_type(v1::GuestMount::VIRTIOFS);
  // Every HostHello is answered for every mount, the same way.
  for (int round = 0; round < 2; ++round) {
    host.Send(hello);
    auto status = host.ReadUntil(GuestToHost::kMountStatus, kTimeoutMs);
    REQUIRE(status);
    CHECK(status->mount_status().tag() == "cove-test-no-such-tag");
    CHECK_FALSE(status->mount_status().mounted());
    // ENODEV, EINVAL, or EPERM when not root: the kernel's word, and where.
    CHECK_THAT(status->mount_status().error(),
               Catch::StartsWith("mount virtiofs cove-test-no-such-tag on " + dir + "/home/u: "));
  }
  // The link is fine, and a mount not made has no watched directories.
  host.Send(HostHello(5));
  while (true) {
    auto next = host.ReadControl(kTimeoutMs);
    REQUIRE(next);
    CHECK_FALSE(next->has_watched_dirs());
    if (next->has_hello()) break;
  }
}

}  // namespace cove::agent::test
