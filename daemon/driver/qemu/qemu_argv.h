// The qemu command line for a machine, as a pure function so it can be unit
// tested. Always an argv: qemu is never started through a shell.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/driver/driver.h"

namespace cove::daemon::qemu {

// The virtio-serial port name the guest agent looks for.
inline constexpr char kAgentPortName[] = "org.cove.agent.0";

// The user-mode network device (slirp), which lanes are added to.
inline constexpr char kUserNetId[] = "net0";

// A host forward of the user-mode network, as `info usernet` lists it.
struct UserNetForward {
  std::string host_ip;
  uint16_t host_port = 0;
  std::string guest_ip;
  uint16_t guest_port = 0;
};

// The TCP host forwards in the text of HMP `info usernet`.
std::vector<UserNetForward> ParseTcpHostForwards(const std::string& info_usernet);

// "qemu-system-x86_64" for "x86_64", "qemu-system-aarch64" for "aarch64".
std::string QemuBinaryName(const std::string& arch);

// QEMU option values are comma-separated; a literal comma is written twice.
std::string EscapeOptionValue(const std::string& value);

// argv[0] is `qemu_binary`.
std::vector<std::string> BuildQemuArgv(const std::string& qemu_binary, const LaunchSpec& spec);

}  // namespace cove::daemon::qemu
