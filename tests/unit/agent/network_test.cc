#include "guest/agent/reports/network.h"

#include <catch2/catch.hpp>

using cove::agent::ParseDefaultRoute;
using cove::agent::ParseNameservers;

TEST_CASE("the default route's gateway and device come from /proc/net/route", "[agent][network]") {
  const char* text =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
      "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
  auto route = ParseDefaultRoute(text);
  CHECK(route.gateway == "10.0.2.2");
  CHECK(route.interface == "eth0");
}

TEST_CASE("no default route, a down one or garbage gives none", "[agent][network]") {
  const char* header = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n";
  CHECK(ParseDefaultRoute(header).gateway.empty());
  CHECK(
      ParseDefaultRoute(std::string(header) + "eth0\t00000000\t0202000A\t0002\t0\t0\t0\t00000000\n")
          .gateway.empty());  // not up
  CHECK(ParseDefaultRoute(std::string(header) + "eth0\t00000000\tZZZ\t0003\t0\t0\t0\t00000000\n")
            .gateway.empty());
  CHECK(ParseDefaultRoute("").gateway.empty());
}

TEST_CASE("nameservers come from resolv.conf in order", "[agent][network]") {
  const char* text =
      "# generated\n"
      "search example.test\n"
      "nameserver 10.0.2.3\n"
      "nameserver\tfec0::3\n"
      "options ndots:1\n";
  CHECK(ParseNameservers(text) == std::vector<std::string>{"10.0.2.3", "fec0::3"});
  CHECK(ParseNameservers("").empty());
}
