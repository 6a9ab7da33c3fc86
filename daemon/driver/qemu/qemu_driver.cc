#include "daemon/driver/qemu/qemu_driver.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/subprocess.h"
#include "daemon/driver/qemu/accel_probe.h"
#include "daemon/driver/qemu/qemu_argv.h"
#include "daemon/driver/qemu/qemu_instance.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace cove::daemon::qemu {

absl::Status QemuDriver::CreateDisk(const std::string& base_image, const std::string& disk,
                                    uint64_t size_bytes) {
  auto result = RunCommand({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                            base_image, disk, std::to_string(size_bytes)},
                           std::chrono::seconds(30));
  if (!result.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run qemu-img (Debian: apt-get install qemu-utils): ", result.status().message()));
  }
  if (!result->ok()) {
    return absl::InternalError(
        absl::StrCat("qemu-img create failed (", result->Describe(), "): ", result->output));
  }
  return absl::OkStatus();
}

absl::Status QemuDriver::GrowDisk(const std::string& disk, uint64_t size_bytes) {
  // The overlay's virtual size only: its backing image stays as it is.
  auto result =
      RunCommand({"qemu-img", "resize", "-q", "-f", "qcow2", disk, std::to_string(size_bytes)},
                 std::chrono::seconds(30));
  if (!result.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run qemu-img (Debian: apt-get install qemu-utils): ", result.status().message()));
  }
  if (!result->ok()) {
    return absl::InternalError(
        absl::StrCat("qemu-img resize failed (", result->Describe(), "): ", result->output));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VmInstance>> QemuDriver::Launch(const LaunchSpec& spec,
                                                               VmCallbacks callbacks) {
  auto qemu = FindInPath(QemuBinaryName(spec.arch));
  if (!qemu.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        QemuBinaryName(spec.arch), " is not installed (Debian: apt-get install qemu-system-",
        spec.arch == "aarch64" ? "arm" : "x86", ")"));
  }
  LaunchSpec with_env = spec;
  // Benchmarks only (bench/ports.sh): QEMU's own forwards as the peer.
  if (const char* fwds = std::getenv("COVE_BENCH_HOSTFWD"); fwds != nullptr && *fwds != '\0') {
    with_env.user_net_hostfwds = absl::StrSplit(fwds, ' ', absl::SkipEmpty());
  }
  std::vector<std::string> argv = BuildQemuArgv(*qemu, with_env);
  spdlog::info("{}: launching {}", spec.name, absl::StrJoin(argv, " "));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, spec.hypervisor_log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own session: qemu outlives coved and ignores the terminal's signals.
  // coved ignores SIGPIPE; qemu must not inherit that.
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", *qemu, ": ", std::strerror(rc)));
  }
  auto instance =
      std::make_unique<QemuInstance>(loop_, spec, pid, /*is_child=*/true, std::move(callbacks));
  if (auto st = instance->Begin(); !st.ok()) return st;
  return instance;
}

absl::StatusOr<std::unique_ptr<VmInstance>> QemuDriver::Adopt(const LaunchSpec& spec, int pid,
                                                              VmCallbacks callbacks) {
#ifdef __linux__
  // The pid must still be this machine's qemu, not a reused pid.
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string cmdline = ss.str();
  if (cmdline.find("cove-" + spec.name + ",debug-threads=on") == std::string::npos ||
      cmdline.find(spec.qmp_socket) == std::string::npos) {
    return absl::NotFoundError(absl::StrCat("pid ", pid, " is not machine ", spec.name, "'s qemu"));
  }
#endif
  auto instance =
      std::make_unique<QemuInstance>(loop_, spec, pid, /*is_child=*/false, std::move(callbacks));
  if (auto st = instance->Begin(); !st.ok()) return st;
  return instance;
}

absl::StatusOr<AccelReport> QemuDriver::ProbeAccelerators(const std::string& arch,
                                                          const std::string& cache_file,
                                                          const std::string& scratch_dir,
                                                          bool reprobe) const {
  return qemu::ProbeAccelerators(QemuBinaryName(arch), arch, cache_file, scratch_dir, reprobe);
}

}  // namespace cove::daemon::qemu
