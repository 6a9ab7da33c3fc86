#include "daemon/forward/port_rules.h"

#include <catch2/catch.hpp>

namespace cove::daemon {
namespace {

cove::agent::v1::Listener L(cove::agent::v1::Proto proto, const std::string& ip, uint32_t port) {
  cove::agent::v1::Listener l;
  l.set_proto(proto);
  l.set_address(ip);
  l.set_port(port);
  return l;
}

const auto kTcp = cove::agent::v1::PROTO_TCP;
const auto kUdp = cove::agent::v1::PROTO_UDP;

}  // namespace

TEST_CASE("without rules, default addresses forward to host loopback at the same port", "[ports]") {
  cove::v1::MachineSpec spec;
  auto got = DesiredForwards(
      spec, {L(kTcp, "0.0.0.0", 8080), L(kTcp, "::", 8080), L(kTcp, "127.0.0.1", 3000),
             L(kUdp, "::1", 5353), L(kTcp, "172.17.0.1", 9000), L(kTcp, "10.0.2.15", 22)});
  REQUIRE(got.size() == 3);
  const ForwardKey web{cove::v1::PROTO_TCP, "127.0.0.1", 8080};
  REQUIRE(got.count(web));
  CHECK(got[web].guest_ip == "0.0.0.0");  // IPv4 wins over the :: listener on the same port
  CHECK(got.count(ForwardKey{cove::v1::PROTO_TCP, "127.0.0.1", 3000}));
  CHECK(got.count(ForwardKey{cove::v1::PROTO_UDP, "127.0.0.1", 5353}));
}

TEST_CASE("rules: first match wins, ranges map by offset, ignore drops", "[ports]") {
  cove::v1::MachineSpec spec;
  auto* ignore = spec.add_port_rules();
  ignore->set_guest_port_start(22);
  ignore->set_ignore(true);
  auto* range = spec.add_port_rules();
  range->set_guest_port_start(3000);
  range->set_guest_port_end(3009);
  range->set_host_port_start(13000);
  range->set_proto(cove::v1::PROTO_TCP);
  auto* any_ip = spec.add_port_rules();
  any_ip->set_guest_ip("0.0.0.0");
  any_ip->set_guest_port_start(9000);
  any_ip->set_host_ip("0.0.0.0");
  auto got = DesiredForwards(spec, {L(kTcp, "0.0.0.0", 22), L(kTcp, "0.0.0.0", 3005),
                                    L(kUdp, "0.0.0.0", 3005), L(kTcp, "172.17.0.1", 9000)});
  CHECK_FALSE(got.count(ForwardKey{cove::v1::PROTO_TCP, "127.0.0.1", 22}));
  CHECK(got.count(ForwardKey{cove::v1::PROTO_TCP, "127.0.0.1", 13005}));
  // The range rule is TCP only: the UDP listener falls to the default.
  CHECK(got.count(ForwardKey{cove::v1::PROTO_UDP, "127.0.0.1", 3005}));
  // guestIP 0.0.0.0 matches any address, as in Lima; hostIP asks for all.
  CHECK(got.count(ForwardKey{cove::v1::PROTO_TCP, "0.0.0.0", 9000}));
}

TEST_CASE("static forwards win over listeners on the same host end", "[ports]") {
  cove::v1::MachineSpec spec;
  auto* s = spec.add_static_forwards();
  s->set_proto(cove::v1::PROTO_TCP);
  s->set_host_port(8080);
  s->set_guest_port(80);
  auto got = DesiredForwards(spec, {L(kTcp, "0.0.0.0", 8080)});
  REQUIRE(got.size() == 1);
  const auto& t = got.begin()->second;
  CHECK(t.is_static);
  CHECK(t.guest_port == 80);
}

TEST_CASE("bad rules and forwards are refused with what to fix", "[ports]") {
  cove::v1::PortRule r;
  r.set_guest_ip("not-an-ip");
  CHECK_THAT(std::string(CheckPortRule(r).message()), Catch::Contains("guestIP"));
  r = {};
  r.set_host_port_start(80);
  CHECK_THAT(std::string(CheckPortRule(r).message()), Catch::Contains("needs guestPort"));
  r = {};
  r.set_guest_port_start(65000);
  r.set_guest_port_end(65010);
  r.set_host_port_start(65530);
  CHECK_THAT(std::string(CheckPortRule(r).message()), Catch::Contains("pass 65535"));
  cove::v1::StaticForward f;
  f.set_proto(cove::v1::PROTO_TCP);
  f.set_host_port(0);
  f.set_guest_port(80);
  CHECK_FALSE(CheckStaticForward(f).ok());
  cove::v1::MachineSpec spec;
  f.set_host_port(8080);
  *spec.add_static_forwards() = f;
  f.set_host_ip("127.0.0.1");
  *spec.add_static_forwards() = f;
  CHECK_THAT(std::string(CheckPortSettings(spec).message()), Catch::Contains("exists already"));
}

TEST_CASE("only TCP listeners on 0.0.0.0, or on :: taking IPv4, are reachable by a lane",
          "[ports]") {
  cove::v1::MachineSpec spec;
  auto v6only = L(kTcp, "::", 8082);
  v6only.set_v6only(true);
  auto got = DesiredForwards(spec, {L(kTcp, "0.0.0.0", 8080), L(kTcp, "::", 8081), v6only,
                                    L(kTcp, "127.0.0.1", 8083), L(kUdp, "0.0.0.0", 8084)});
  auto reachable = [&](cove::v1::Proto proto, uint16_t port) {
    return got.at(ForwardKey{proto, "127.0.0.1", port}).network_reachable;
  };
  CHECK(reachable(cove::v1::PROTO_TCP, 8080));
  CHECK(reachable(cove::v1::PROTO_TCP, 8081));
  CHECK_FALSE(reachable(cove::v1::PROTO_TCP, 8082));
  CHECK_FALSE(reachable(cove::v1::PROTO_TCP, 8083));
  CHECK_FALSE(reachable(cove::v1::PROTO_UDP, 8084));
}

}  // namespace cove::daemon
