// PortForward and PortForwarder on a real libuv loop with real host ports.
// No agent link: connections are accepted and wait for one.
#include "daemon/forward/port_forward.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <map>

namespace cove::daemon {
namespace {

// A port that was free a moment ago.
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int ListenOn(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 4) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool RunUntil(EventLoop& loop, const std::function<bool()>& done, int timeout_ms = 5000) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    uv_run(loop.uv(), UV_RUN_NOWAIT);
    usleep(2000);
  }
  return true;
}

struct Machine {
  std::map<uint16_t, cove::v1::Forward> last;  // by host port
  std::vector<cove::v1::ForwardState> history;
  std::unique_ptr<PortForwarder> ports;

  Machine(EventLoop& loop, PortRegistry& registry, const std::string& name) {
    ports = std::make_unique<PortForwarder>(
        PortForward::Env{loop, name, registry, []() -> AgentLink* { return nullptr; }},
        [this](const cove::v1::Forward& f) {
          last[static_cast<uint16_t>(f.host_port())] = f;
          history.push_back(f.state());
        });
  }
  cove::v1::ForwardState State(uint16_t port) {
    return last.count(port) ? last[port].state() : cove::v1::FORWARD_STATE_UNSPECIFIED;
  }
};

cove::v1::MachineSpec StaticSpec(uint16_t host_port, const std::string& host_ip = "") {
  cove::v1::MachineSpec spec;
  auto* f = spec.add_static_forwards();
  f->set_proto(cove::v1::PROTO_TCP);
  f->set_host_ip(host_ip);
  f->set_host_port(host_port);
  f->set_guest_port(80);
  return spec;
}

}  // namespace

TEST_CASE("a host port held by another machine is a conflict naming it, until it frees",
          "[ports]") {
  EventLoop loop;
  PortRegistry registry;
  const uint16_t port = FreePort();
  Machine a(loop, registry, "alpha"), b(loop, registry, "beta");
  a.ports->SetSpec(StaticSpec(port));
  REQUIRE(a.State(port) == cove::v1::FORWARD_STATE_LISTENING);
  b.ports->SetSpec(StaticSpec(port));
  REQUIRE(b.State(port) == cove::v1::FORWARD_STATE_CONFLICT);
  CHECK(b.last[port].holder() == "alpha");
  CHECK_THAT(b.last[port].error(), Catch::Contains("cove machine 'alpha'"));

  a.ports->CloseAll();
  CHECK(a.State(port) == cove::v1::FORWARD_STATE_CLOSED);
  REQUIRE(RunUntil(loop, [&] { return b.State(port) == cove::v1::FORWARD_STATE_LISTENING; }));
  CHECK(b.last[port].retries() >= 1);
  b.ports->CloseAll();
  uv_run(loop.uv(), UV_RUN_NOWAIT);
}

TEST_CASE("a port taken by another program is retried and comes up once free", "[ports]") {
  EventLoop loop;
  PortRegistry registry;
  const uint16_t port = FreePort();
  const int holder = ListenOn(port);
  REQUIRE(holder >= 0);
  Machine m(loop, registry, "m");
  m.ports->SetSpec(StaticSpec(port));
  REQUIRE(m.State(port) == cove::v1::FORWARD_STATE_CONFLICT);
  CHECK(m.last[port].holder().empty());
  CHECK_THAT(m.last[port].error(), Catch::Contains("another program"));
  close(holder);
  REQUIRE(RunUntil(loop, [&] { return m.State(port) == cove::v1::FORWARD_STATE_LISTENING; }));
  m.ports->CloseAll();
  uv_run(loop.uv(), UV_RUN_NOWAIT);
}

TEST_CASE("a guest listener going away closes its forward and frees the host port", "[ports]") {
  EventLoop loop;
  PortRegistry registry;
  const uint16_t port = FreePort();
  Machine m(loop, registry, "m");
  m.ports->SetSpec({});
  cove::agent::v1::Listeners set;
  auto* l = set.add_listeners();
  l->set_proto(cove::agent::v1::PROTO_TCP);
  l->set_address("0.0.0.0");
  l->set_port(port);
  m.ports->OnListeners(set);
  REQUIRE(m.State(port) == cove::v1::FORWARD_STATE_LISTENING);
  REQUIRE(m.ports->List().size() == 1);
  const int taken = ListenOn(port);
  CHECK(taken < 0);  // the forward holds it

  m.ports->OnListeners(cove::agent::v1::Listeners());
  CHECK(m.State(port) == cove::v1::FORWARD_STATE_CLOSED);
  CHECK(m.history == std::vector<cove::v1::ForwardState>{cove::v1::FORWARD_STATE_LISTENING,
                                                         cove::v1::FORWARD_STATE_CLOSING,
                                                         cove::v1::FORWARD_STATE_CLOSED});
  RunUntil(loop, [&] { return m.ports->List().empty(); });
  CHECK(m.ports->List().empty());
  const int free_again = ListenOn(port);
  CHECK(free_again >= 0);
  close(free_again);
}

TEST_CASE("an address this host does not have fails with the reason, not retried", "[ports]") {
  EventLoop loop;
  PortRegistry registry;
  Machine m(loop, registry, "m");
  const uint16_t port = FreePort();
  m.ports->SetSpec(StaticSpec(port, "192.0.2.1"));  // TEST-NET-1: never local
  REQUIRE(m.State(port) == cove::v1::FORWARD_STATE_FAILED);
  CHECK_THAT(m.last[port].error(), Catch::Contains("no address 192.0.2.1"));
  m.ports->CloseAll();
}

namespace {

int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  return fd;
}

// What a non-blocking socket has to read now: "" for nothing yet, "EOF".
std::string ReadNow(int fd) {
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n == 0) return "EOF";
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace

TEST_CASE(
    "a forward to 0.0.0.0 goes through the lane, at most 4 connections at once, and "
    "falls back to the agent link when the lane refuses",
    "[ports]") {
  EventLoop loop;
  PortRegistry registry;
  const uint16_t port = FreePort();
  uint16_t lane_port = FreePort();
  int lane = ListenOn(lane_port);
  REQUIRE(lane >= 0);
  fcntl(lane, F_SETFL, O_NONBLOCK);
  std::vector<uint16_t> opened, closed;
  std::map<uint16_t, cove::v1::Forward> last;
  PortForward::Env env{loop, "m", registry, []() -> AgentLink* { return nullptr; }};
  env.open_lane = [&](uint16_t guest_port, VmInstance::LaneDone done) {
    opened.push_back(guest_port);
    done(lane_port);
  };
  env.close_lane = [&](uint16_t host_port) { closed.push_back(host_port); };
  auto ports = std::make_unique<PortForwarder>(
      std::move(env), [&](const cove::v1::Forward& f) { last[f.host_port()] = f; });
  cove::v1::MachineSpec spec = StaticSpec(FreePort());  // to the guest's 127.0.0.1
  const uint16_t static_port = spec.static_forwards(0).host_port();
  ports->SetSpec(spec);
  cove::agent::v1::Listeners listeners;
  auto* l = listeners.add_listeners();
  l->set_proto(cove::agent::v1::PROTO_TCP);
  l->set_address("0.0.0.0");
  l->set_port(port);
  ports->OnListeners(listeners);
  REQUIRE(last[port].state() == cove::v1::FORWARD_STATE_LISTENING);
  CHECK(last[port].route() == cove::v1::FORWARD_ROUTE_NETWORK);
  CHECK(last[static_port].route() == cove::v1::FORWARD_ROUTE_AGENT);
  CHECK(opened == std::vector<uint16_t>{port});

  // Bytes go both ways through the lane, with no agent link at all.
  int client = Connect(port);
  int server = -1;
  REQUIRE(RunUntil(loop, [&] { return (server = accept(lane, nullptr, nullptr)) >= 0; }));
  REQUIRE(send(client, "ping", 4, 0) == 4);
  std::string got;
  RunUntil(loop, [&] {
    char buf[16];
    ssize_t n = recv(server, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got == "ping";
  });
  REQUIRE(got == "ping");
  REQUIRE(send(server, "pong", 4, 0) == 4);
  got.clear();
  RunUntil(loop, [&] { return (got += ReadNow(client)) == "pong"; });
  REQUIRE(got == "pong");
  CHECK(ports->List().size() == 2);

  // Four more at once: three join the first on the lane, the fifth waits
  // for the agent link.
  auto connections = [&] {
    for (const auto& f : ports->List()) {
      if (f.host_port() == port) return f.connections();
    }
    return 0u;
  };
  std::vector<int> more;
  for (int i = 0; i < 4; i++) more.push_back(Connect(port));
  std::vector<int> served;
  RunUntil(loop, [&] {
    int fd = accept(lane, nullptr, nullptr);
    if (fd >= 0) served.push_back(fd);
    return served.size() >= 3 && connections() == 5;
  });
  REQUIRE(connections() == 5);
  CHECK(served.size() == 3);
  // Each route was chosen at accept: a fourth lane connection would be
  // queued at the lane by now.
  const int fourth = accept(lane, nullptr, nullptr);
  CHECK(fourth < 0);

  // The lane connections end when both sides close; the fifth still waits.
  for (int fd : more) close(fd);
  for (int fd : served) close(fd);
  for (int fd : {client, server}) close(fd);
  RunUntil(loop, [&] { return connections() == 1; });
  REQUIRE(connections() == 1);

  // The lane goes away: a new connection tries it, is refused, and moves to
  // the agent link, where it waits (nothing to read, no EOF) instead of
  // being dropped.
  close(lane);
  int late = Connect(port);
  // Until libuv has no request in flight: the refused connect is over.
  RunUntil(loop, [&] { return connections() == 2 && loop.uv()->active_reqs.count == 0; });
  REQUIRE(loop.uv()->active_reqs.count == 0);
  CHECK(connections() == 2);
  CHECK(ReadNow(late).empty());

  ports->CloseAll();
  CHECK(closed == std::vector<uint16_t>{lane_port});
  std::string seen;
  RunUntil(loop, [&] { return (seen = ReadNow(late)) == "EOF"; });
  CHECK(seen == "EOF");
  close(late);
  uv_run(loop.uv(), UV_RUN_NOWAIT);
}

TEST_CASE("a lane that comes late changes the route; one no longer wanted is closed at once",
          "[ports]") {
  EventLoop loop;
  PortRegistry registry;
  const uint16_t port = FreePort();
  std::vector<VmInstance::LaneDone> pending;
  std::vector<uint16_t> closed;
  std::vector<cove::v1::Forward> events;
  PortForward::Env env{loop, "m", registry, []() -> AgentLink* { return nullptr; }};
  env.open_lane = [&](uint16_t, VmInstance::LaneDone done) { pending.push_back(std::move(done)); };
  env.close_lane = [&](uint16_t host_port) { closed.push_back(host_port); };
  PortForwarder ports(std::move(env), [&](const cove::v1::Forward& f) { events.push_back(f); });
  cove::agent::v1::Listeners listeners;
  auto* l = listeners.add_listeners();
  l->set_proto(cove::agent::v1::PROTO_TCP);
  l->set_address("::");
  l->set_port(port);
  ports.OnListeners(listeners);
  REQUIRE(pending.size() == 1);
  REQUIRE(!events.empty());
  CHECK(events.back().route() == cove::v1::FORWARD_ROUTE_AGENT);
  pending[0](uint16_t{40001});
  CHECK(events.back().route() == cove::v1::FORWARD_ROUTE_NETWORK);
  CHECK(events.back().state() == cove::v1::FORWARD_STATE_LISTENING);

  // The listener goes and comes back before the second lane's answer; the
  // first lane is closed with the forward, the answer for a lane nobody
  // wants any more is closed as it arrives, and the current one is kept.
  ports.OnListeners(cove::agent::v1::Listeners());
  CHECK(closed == std::vector<uint16_t>{40001});
  ports.OnListeners(listeners);
  ports.OnListeners(cove::agent::v1::Listeners());
  ports.OnListeners(listeners);
  REQUIRE(pending.size() == 3);
  pending[1](uint16_t{40002});
  CHECK(closed == std::vector<uint16_t>{40001, 40002});
  pending[2](uint16_t{40003});
  CHECK(closed == std::vector<uint16_t>{40001, 40002});
  CHECK(ports.List().back().route() == cove::v1::FORWARD_ROUTE_NETWORK);
  ports.CloseAll();
  CHECK(closed == std::vector<uint16_t>{40001, 40002, 40003});
  uv_run(loop.uv(), UV_RUN_NOWAIT);
}

}  // namespace cove::daemon
