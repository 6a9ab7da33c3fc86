#include "guest/agent/core/flags.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace cove::agent {
namespace {

FlagsResult Parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"cove-agent"};
  for (const auto& arg : args) argv.push_back(arg.c_str());
  return ParseFlags(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

TEST_CASE("flags default to the guest agent", "[agent][flags]") {
  FlagsResult r = Parse({});
  REQUIRE(r.error.empty());
  CHECK(r.flags.connect_path.empty());
  CHECK(r.flags.port_name == "org.cove.agent.0");
  CHECK(r.flags.heartbeat_ms == 5000);
  CHECK(r.flags.poweroff);
  CHECK_FALSE(r.flags.show_help);
  CHECK_FALSE(r.flags.show_version);
}

TEST_CASE("flags take values separately or after =", "[agent][flags]") {
  FlagsResult r = Parse({"--connect", "/tmp/a.sock", "--heartbeat-ms=250", "--no-poweroff"});
  REQUIRE(r.error.empty());
  CHECK(r.flags.connect_path == "/tmp/a.sock");
  CHECK(r.flags.heartbeat_ms == 250);
  CHECK_FALSE(r.flags.poweroff);

  r = Parse({"--port-name=org.example.1", "--version", "--help"});
  REQUIRE(r.error.empty());
  CHECK(r.flags.port_name == "org.example.1");
  CHECK(r.flags.show_version);
  CHECK(r.flags.show_help);
}

TEST_CASE("bad flags are reported", "[agent][flags]") {
  CHECK(Parse({"--bogus"}).error == "unknown flag '--bogus'");
  CHECK(Parse({"stray"}).error == "unexpected argument 'stray'");
  CHECK(Parse({"--connect"}).error == "flag --connect needs a value");
  CHECK(Parse({"--connect="}).error == "--connect needs a socket path");
  CHECK_FALSE(Parse({"--heartbeat-ms", "5s"}).error.empty());
  CHECK_FALSE(Parse({"--heartbeat-ms", "0"}).error.empty());
  CHECK_FALSE(Parse({"--heartbeat-ms", "-5"}).error.empty());
  CHECK_FALSE(Parse({"--heartbeat-ms", "99999999999"}).error.empty());
  CHECK(Parse({"--no-poweroff=yes"}).error == "flag --no-poweroff takes no value");
  CHECK_FALSE(Parse({"--port-name", "../x"}).error.empty());
  CHECK(Parse({"--connect", "/s", "--port-name", "p"}).error ==
        "--connect and --port-name exclude each other");
}

TEST_CASE("--listen takes a socket path and excludes the other channels", "[agent][flags]") {
  FlagsResult r = Parse({"--listen", "/tmp/agent.sock", "--no-poweroff"});
  REQUIRE(r.error.empty());
  CHECK(r.flags.listen_path == "/tmp/agent.sock");
  CHECK(r.flags.connect_path.empty());
  CHECK(Parse({"--listen=/s"}).flags.listen_path == "/s");
  CHECK(Parse({"--listen"}).error == "flag --listen needs a value");
  CHECK(Parse({"--listen="}).error == "--listen needs a socket path");
  CHECK(Parse({"--connect", "/a", "--listen", "/b"}).error ==
        "--connect and --listen exclude each other");
  CHECK(Parse({"--listen", "/b", "--port-name", "p"}).error ==
        "--listen and --port-name exclude each other");
}

}  // namespace cove::agent
