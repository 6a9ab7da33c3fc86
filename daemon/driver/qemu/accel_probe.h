// Which hardware accelerator really works. /dev/kvm existing is not enough:
// some hosts expose a kvm that cannot run a stock guest (a PVM hypervisor:
// qemu aborts setting MSR 0x10a, or the guest hangs). So the probe boots a
// tiny multiboot program that writes to qemu's isa-debug-exit port; only a
// CPU that really ran guest code makes qemu exit with the expected status.
//
// Probing takes up to a few seconds, so verdicts are cached in a file keyed
// by the qemu binary, its version and the host kernel.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/api_names.h"
#include "cove/v1/machines.pb.h"

namespace cove::daemon::qemu {

struct AccelVerdict {
  cove::v1::Accel accel = cove::v1::ACCEL_UNSPECIFIED;
  bool usable = false;
  std::string reason;  // why not, when not usable
};

struct AccelReport {
  std::string qemu_path;
  std::string qemu_version;
  std::vector<AccelVerdict> verdicts;  // hardware accelerators, then tcg
  // What ACCEL_AUTO means on this host.
  cove::v1::Accel auto_accel = cove::v1::ACCEL_TCG;
};

// The multiboot program, for tests.
std::string ProbeKernelImage();

// Probes the accelerators for `arch` with `qemu_binary` (blocking; run it off
// the loop thread). Reads and writes `cache_file` (may be empty: no cache).
// COVE_ACCEL_PROBE_TIMEOUT_MS overrides the per-probe timeout (default 5000).
absl::StatusOr<AccelReport> ProbeAccelerators(const std::string& qemu_binary,
                                              const std::string& arch,
                                              const std::string& cache_file,
                                              const std::string& scratch_dir);

}  // namespace cove::daemon::qemu
