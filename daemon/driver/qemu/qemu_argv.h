// The qemu command line for a machine, as a pure function so it can be unit
// tested. Always an argv: qemu is never started through a shell.
#pragma once

#include <string>
#include <vector>

#include "daemon/driver/driver.h"

namespace cove::daemon::qemu {

// The virtio-serial port name the guest agent looks for.
inline constexpr char kAgentPortName[] = "org.cove.agent.0";

// "qemu-system-x86_64" for "x86_64", "qemu-system-aarch64" for "aarch64".
std::string QemuBinaryName(const std::string& arch);

// QEMU option values are comma-separated; a literal comma is written twice.
std::string EscapeOptionValue(const std::string& value);

// argv[0] is `qemu_binary`.
std::vector<std::string> BuildQemuArgv(const std::string& qemu_binary, const LaunchSpec& spec);

}  // namespace cove::daemon::qemu
