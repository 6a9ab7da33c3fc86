// Defaults and limits of a machine spec, as a pure function of what the user
// asked and what the host has (so it is unit tested without a host).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "cove/v1/machines.pb.h"

namespace cove::daemon {

struct HostResources {
  uint32_t cpus = 0;
  uint64_t memory_bytes = 0;
  uint64_t disk_bytes = 0;  // size of the filesystem holding COVE_HOME
  std::string arch;         // "x86_64" / "aarch64"
  bool macos = false;
  // The user's home directory ($HOME): the default mount.
  std::string user_home;

  static HostResources Probe(const std::string& home);
};

inline constexpr uint32_t kDefaultCpus = 2;
inline constexpr uint64_t kDefaultMemory = 2ull << 30;
inline constexpr uint64_t kDefaultDisk = 20ull << 30;
inline constexpr uint64_t kMinMemory = 256ull << 20;
inline constexpr uint64_t kMinDisk = 1ull << 30;
inline constexpr uint32_t kDefaultMaxRestarts = 3;
inline constexpr uint32_t kMaxRestarts = 100;

// Fills defaults (2 CPUs, 2 GiB, 20 GiB, host arch, auto accel, qemu) and
// checks limits; errors say what to change. Does not look at the image.
absl::StatusOr<cove::v1::MachineSpec> NormalizeSpec(const cove::v1::MachineSpec& in,
                                                    const HostResources& host);

// The size limits of a filled-in spec: 1 CPU up to the host's, memory from
// 256 MiB up to the host's, a disk from 1 GiB up to the file system that
// holds the cove home.
absl::Status CheckSizes(const cove::v1::MachineSpec& spec, const HostResources& host);

// Whether `accel` can run an `arch` guest on this host at all (kvm only on
// Linux, hvf only on macOS, either only for the host's own architecture).
// AUTO and TCG always can.
absl::Status CheckAccel(const std::string& arch, cove::v1::Accel accel, const HostResources& host);

// The restart policy: unspecified becomes never; on-failure gets its
// default limit (3); a limit above 100, or one without on-failure, is refused.
absl::Status NormalizeRestart(cove::v1::MachineSpec& spec);

// Reverse sockets: valid unique names, absolute paths that fit a unix
// socket, no guest path twice.
absl::Status CheckReverseSockets(const cove::v1::MachineSpec& spec);

}  // namespace cove::daemon
