// Which hardware accelerator really works. /dev/kvm existing is not enough:
// some hosts expose a kvm that cannot run a stock guest (a PVM hypervisor:
// qemu aborts setting MSR 0x10a, the guest hangs early in the kernel, or qemu
// stops it with "KVM internal error"). So the probe boots a tiny program that
// switches the CPU to 64-bit long mode with paging and then writes to qemu's
// isa-debug-exit port; only a CPU that really ran guest code makes qemu exit
// with the expected status.
//
// The probe is a first opinion. A real boot may overrule it: a machine whose
// guest shows no sign of life under an accelerator records that accelerator
// as unusable here (AccelResolver::RecordBootFailure), with why. The verdict
// types and their cache are driver-neutral (daemon/driver/accel.h).
//
// Verdicts are cached per user (they are facts about the host and qemu, not
// about one cove home), keyed by the qemu binary, its version and the host
// kernel; a change of any of them probes again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/api_names.h"
#include "cove/v1/machines.pb.h"
#include "daemon/driver/accel.h"

namespace cove::daemon::qemu {

// The probe program (a multiboot image), for tests.
std::string ProbeKernelImage();

// Probes the accelerators for `arch` with `qemu_binary` (blocking; run it off
// the loop thread). Reads and writes `cache_file` (may be empty: no cache);
// `reprobe` ignores what the cache says.
// COVE_ACCEL_PROBE_TIMEOUT_MS overrides the per-probe timeout (default 5000).
absl::StatusOr<AccelReport> ProbeAccelerators(const std::string& qemu_binary,
                                              const std::string& arch,
                                              const std::string& cache_file,
                                              const std::string& scratch_dir, bool reprobe = false);

}  // namespace cove::daemon::qemu
