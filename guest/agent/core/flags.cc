#include "guest/agent/core/flags.h"

#include <charconv>
#include <string_view>
#include <utility>

namespace cove::agent {

const char kUsage[] =
    "usage: cove-agent [flags]\n"
    "\n"
    "The guest side of the cove agent link. By default it opens the virtio-serial\n"
    "port named org.cove.agent.0 and serves coved on it until the VM powers off.\n"
    "\n"
    "  --connect PATH      connect to a unix stream socket instead of the port\n"
    "                      (tests and benchmarks on the host)\n"
    "  --listen PATH       listen on a unix stream socket (replacing a stale one)\n"
    "                      and serve each connection as the channel, one at a\n"
    "                      time, as coved connects to QEMU's chardev socket\n"
    "  --port-name NAME    virtio-serial port name (default org.cove.agent.0)\n"
    "  --heartbeat-ms N    heartbeat interval in milliseconds (default 5000)\n"
    "  --no-poweroff       on ShutdownRequest exit instead of signalling init\n"
    "  --version           print the version and exit\n"
    "  --help              print this help and exit\n";

namespace {

bool ParseInt(std::string_view text, int& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

}  // namespace

FlagsResult ParseFlags(int argc, const char* const* argv) {
  FlagsResult result;
  Flags& flags = result.flags;
  bool port_name_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::string_view inline_value;
    bool has_inline_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
      has_inline_value = true;
    }
    // Takes the flag's value from "=value" or the next argument.
    auto take_value = [&](std::string_view& value) {
      if (has_inline_value) {
        value = inline_value;
        return true;
      }
      if (i + 1 >= argc) {
        result.error = "flag " + std::string(name) + " needs a value";
        return false;
      }
      value = argv[++i];
      return true;
    };
    auto no_value = [&]() {
      if (!has_inline_value) return true;
      result.error = "flag " + std::string(name) + " takes no value";
      return false;
    };

    std::string_view value;
    if (name == "--connect") {
      if (!take_value(value)) return result;
      if (value.empty()) {
        result.error = "--connect needs a socket path";
        return result;
      }
      flags.connect_path = value;
    } else if (name == "--listen") {
      if (!take_value(value)) return result;
      if (value.empty()) {
        result.error = "--listen needs a socket path";
        return result;
      }
      flags.listen_path = value;
    } else if (name == "--port-name") {
      if (!take_value(value)) return result;
      if (value.empty() || value.find('/') != std::string_view::npos) {
        result.error = "--port-name needs a port name such as org.cove.agent.0";
        return result;
      }
      flags.port_name = value;
      port_name_set = true;
    } else if (name == "--heartbeat-ms") {
      if (!take_value(value)) return result;
      if (!ParseInt(value, flags.heartbeat_ms) || flags.heartbeat_ms < kMinHeartbeatMs ||
          flags.heartbeat_ms > kMaxHeartbeatMs) {
        result.error = "--heartbeat-ms needs a whole number of milliseconds from " +
                       std::to_string(kMinHeartbeatMs) + " to " + std::to_string(kMaxHeartbeatMs) +
                       ", got '" + std::string(value) + "'";
        return result;
      }
    } else if (name == "--no-poweroff") {
      if (!no_value()) return result;
      flags.poweroff = false;
    } else if (name == "--version") {
      if (!no_value()) return result;
      flags.show_version = true;
    } else if (name == "--help" || name == "-h") {
      if (!no_value()) return result;
      flags.show_help = true;
    } else if (name.starts_with("-")) {
      result.error = "unknown flag '" + std::string(arg) + "'";
      return result;
    } else {
      result.error = "unexpected argument '" + std::string(arg) + "'";
      return result;
    }
  }
  // One channel at most: the port (by name), --connect or --listen.
  std::string given;
  for (auto [set, flag] : {std::pair{!flags.connect_path.empty(), "--connect"},
                           std::pair{!flags.listen_path.empty(), "--listen"},
                           std::pair{port_name_set, "--port-name"}}) {
    if (!set) continue;
    if (!given.empty()) {
      result.error = given + " and " + flag + " exclude each other";
      break;
    }
    given = flag;
  }
  return result;
}

}  // namespace cove::agent
