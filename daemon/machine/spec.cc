#include "daemon/machine/spec.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/api_names.h"
#include "common/names.h"
#include "common/sizes.h"
#include "daemon/forward/port_rules.h"
#include "daemon/image/image_store.h"

namespace cove::daemon {

HostResources HostResources::Probe(const std::string& home) {
  HostResources h;
  h.cpus = std::max(1u, std::thread::hardware_concurrency());
  h.memory_bytes = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                   static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  struct statvfs vfs {};
  if (::statvfs(home.c_str(), &vfs) == 0) {
    h.disk_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  }
  h.arch = HostArch();
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    h.user_home = home;
  }
#if defined(__APPLE__)
  h.macos = true;
#endif
  return h;
}

absl::StatusOr<cove::v1::MachineSpec> NormalizeSpec(const cove::v1::MachineSpec& in,
                                                    const HostResources& host) {
  cove::v1::MachineSpec spec = in;
  if (spec.cpus() == 0) spec.set_cpus(std::min(kDefaultCpus, host.cpus));
  if (spec.memory_bytes() == 0)
    spec.set_memory_bytes(std::min(kDefaultMemory, host.memory_bytes / 2));
  if (spec.disk_bytes() == 0) spec.set_disk_bytes(kDefaultDisk);
  if (spec.accel() == cove::v1::ACCEL_UNSPECIFIED) spec.set_accel(cove::v1::ACCEL_AUTO);
  if (spec.driver() == cove::v1::DRIVER_UNSPECIFIED) spec.set_driver(cove::v1::DRIVER_QEMU);
  if (spec.arch().empty()) spec.set_arch(host.arch);
  if (!spec.has_foreign_binaries()) spec.set_foreign_binaries(true);
  auto arch = NormalizeArch(spec.arch());
  if (!arch.ok()) return arch.status();
  spec.set_arch(*arch);

  if (auto st = CheckSizes(spec, host); !st.ok()) return st;
  if (spec.driver() != cove::v1::DRIVER_QEMU) {
    return absl::InvalidArgumentError("only the qemu driver exists yet; the vz driver is coming");
  }
  if (auto st = CheckAccel(spec.arch(), spec.accel(), host); !st.ok()) return st;
  if (spec.runtime() == cove::v1::RUNTIME_UNSPECIFIED)
    spec.set_runtime(cove::v1::RUNTIME_CONTAINERD);
  if (spec.runtime() != cove::v1::RUNTIME_CONTAINERD &&
      spec.runtime() != cove::v1::RUNTIME_DOCKER) {
    return absl::InvalidArgumentError("unknown runtime; use containerd or docker");
  }
  if (auto st = CheckReverseSockets(spec); !st.ok()) return st;
  if (auto st = CheckPortSettings(spec); !st.ok()) return st;
  if (auto st = NormalizeRestart(spec); !st.ok()) return st;
  return spec;
}

absl::Status CheckSizes(const cove::v1::MachineSpec& spec, const HostResources& host) {
  if (spec.cpus() == 0) {
    return absl::InvalidArgumentError("--cpus 0: a machine needs at least 1 CPU");
  }
  if (spec.cpus() > host.cpus) {
    return absl::ResourceExhaustedError(
        absl::StrCat("--cpus ", spec.cpus(), " is more than this host's ", host.cpus, " CPUs"));
  }
  if (spec.memory_bytes() < kMinMemory) {
    return absl::InvalidArgumentError(absl::StrCat("--memory ", FormatSize(spec.memory_bytes()),
                                                   " is too small; a machine needs at least ",
                                                   FormatSize(kMinMemory)));
  }
  if (spec.memory_bytes() > host.memory_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("--memory ", FormatSize(spec.memory_bytes()),
                                                     " is more than this host's ",
                                                     FormatSize(host.memory_bytes)));
  }
  if (spec.disk_bytes() < kMinDisk) {
    return absl::InvalidArgumentError(absl::StrCat("--disk ", FormatSize(spec.disk_bytes()),
                                                   " is too small; use at least ",
                                                   FormatSize(kMinDisk)));
  }
  if (host.disk_bytes != 0 && spec.disk_bytes() > host.disk_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("--disk ", FormatSize(spec.disk_bytes()), " is more than the ",
                     FormatSize(host.disk_bytes), " filesystem that holds the cove home"));
  }
  return absl::OkStatus();
}

absl::Status CheckAccel(const std::string& arch, cove::v1::Accel accel, const HostResources& host) {
  const bool native = arch == host.arch;
  switch (accel) {
    case cove::v1::ACCEL_AUTO:
    case cove::v1::ACCEL_TCG:
      return absl::OkStatus();
    case cove::v1::ACCEL_KVM:
      if (host.macos)
        return absl::InvalidArgumentError("kvm is Linux only; use --accel hvf or auto");
      break;
    case cove::v1::ACCEL_HVF:
      if (!host.macos)
        return absl::InvalidArgumentError("hvf is macOS only; use --accel kvm or auto");
      break;
    default:
      return absl::InvalidArgumentError("unknown accelerator; use auto, kvm, hvf or tcg");
  }
  if (!native) {
    return absl::InvalidArgumentError(absl::StrCat(AccelName(accel), " cannot run a ", arch,
                                                   " guest on a ", host.arch,
                                                   " host; use --accel tcg (emulation) or auto"));
  }
  return absl::OkStatus();
}

absl::Status NormalizeRestart(cove::v1::MachineSpec& spec) {
  switch (spec.restart()) {
    case cove::v1::RESTART_POLICY_UNSPECIFIED:
    case cove::v1::RESTART_POLICY_NEVER:
      spec.set_restart(cove::v1::RESTART_POLICY_NEVER);
      if (spec.max_restarts() != 0) {
        return absl::InvalidArgumentError(
            "a restart limit needs the on-failure policy; use --restart on-failure:N");
      }
      return absl::OkStatus();
    case cove::v1::RESTART_POLICY_ON_FAILURE:
      if (spec.max_restarts() == 0) spec.set_max_restarts(kDefaultMaxRestarts);
      if (spec.max_restarts() > kMaxRestarts) {
        return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxRestarts,
                                                       " restarts in a row; use --restart "
                                                       "on-failure:N with N from 1 to ",
                                                       kMaxRestarts));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("unknown restart policy; use never or on-failure[:N]");
  }
}

absl::Status CheckReverseSockets(const cove::v1::MachineSpec& spec) {
  std::set<std::string> names, guest_paths;
  for (const auto& r : spec.reverse_sockets()) {
    const std::string what = absl::StrCat("--reverse-socket ", r.name());
    if (auto st = ValidateName(r.name()); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("reverse socket name: ", st.message()));
    }
    if (!names.insert(r.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(what, " is given twice"));
    }
    for (const std::string* path : {&r.host_path(), &r.guest_path()}) {
      if (path->empty() || (*path)[0] != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": '", *path, "' must be an absolute path"));
      }
      if (path->size() > 100) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": '", *path, "' is too long for a unix socket (100 bytes at most)"));
      }
    }
    if (!guest_paths.insert(r.guest_path()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": guest path ", r.guest_path(), " is used twice"));
    }
  }
  return absl::OkStatus();
}

}  // namespace cove::daemon
