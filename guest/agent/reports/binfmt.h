// Foreign binaries: the binfmt_misc handlers that run another architecture's
// programs (a linux/arm64 container in an x86_64 guest) through the image's
// qemu-user interpreters, registered once per boot, and which processes run
// through them now.
//
// The image says what to register the way systemd-binfmt reads it: one
// ":name:type:offset:magic:mask:interpreter:flags" line per file in
// /usr/lib/binfmt.d (qemu-user's, with the F flag: the kernel opens the
// interpreter at registration, so it works in containers' mount namespaces
// that do not have it). Rosetta, under vz, will be one more such file.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cove::agent {

struct BinfmtHandler {
  std::string name;         // "qemu-aarch64"
  std::string arch;         // what it runs: "aarch64"
  std::string interpreter;  // resolved: "/usr/bin/qemu-aarch64"
};

struct BinfmtResult {
  std::vector<BinfmtHandler> handlers;  // registered (now or earlier this boot)
  std::string error;                    // the first failure, for the host
};

// Registers every handler of the *.conf files in `conf_dir` that is not
// registered yet, mounting binfmt_misc at `proc_dir` first if needed.
BinfmtResult RegisterBinfmt(const std::string& conf_dir = "/usr/lib/binfmt.d",
                            const std::string& proc_dir = "/proc/sys/fs/binfmt_misc");

// One line of a binfmt.d file, parsed; false for comments and malformed
// lines. `arch` comes from the name ("qemu-aarch64" -> "aarch64").
bool ParseBinfmtLine(const std::string& line, BinfmtHandler* handler, std::string* register_line);

struct EmulatedProcessInfo {
  pid_t pid = 0;
  std::string comm;
  std::string arch;
  std::string cgroup;  // cgroup v2 path
  uint64_t rss_bytes = 0;
};

// Processes whose executable is one of the handlers' interpreters (with the
// F flag, /proc/PID/exe is the interpreter), at most `max`.
std::vector<EmulatedProcessInfo> ScanEmulated(const std::vector<BinfmtHandler>& handlers,
                                              size_t max, const std::string& proc = "/proc");

}  // namespace cove::agent
