// What each accelerator can do on this host, for one guest architecture:
// the verdicts a driver's probe finds (Driver::ProbeAccelerators), cached per
// user and overruled by real boots (AccelResolver). Driver-neutral: QEMU's
// probe fills them today (daemon/driver/qemu/accel_probe.h), a vz driver's
// will tomorrow.
//
// Plain values; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cove/v1/machines.pb.h"

namespace cove::daemon {

struct AccelVerdict {
  cove::v1::Accel accel = cove::v1::ACCEL_UNSPECIFIED;
  bool usable = false;
  std::string reason;  // why not, when not usable
  // The CPU model the verdict holds for (qemu: "host", or
  // "host,-arch-capabilities" where qemu cannot set that MSR); empty for tcg.
  std::string cpu;
  // What decided it: "probe" or "boot" (a real machine's start).
  std::string checked_by = "probe";
  int64_t checked_at_unix = 0;
};

struct AccelReport {
  std::string hypervisor_path;
  std::string hypervisor_version;
  // Identifies the hypervisor build and host kernel the verdicts hold for.
  std::string key;
  std::vector<AccelVerdict> verdicts;  // hardware accelerators, then tcg
  // What ACCEL_AUTO means on this host: the first usable verdict.
  cove::v1::Accel auto_accel = cove::v1::ACCEL_TCG;

  const AccelVerdict* Find(cove::v1::Accel accel) const;
  // Marks `accel` unusable because of a real boot; recomputes auto_accel.
  void RecordBootFailure(cove::v1::Accel accel, const std::string& reason);
  // auto_accel from the verdicts: the first usable one, else tcg.
  void ChooseAuto();
};

cove::v1::AccelVerdict ToProto(const AccelVerdict& verdict);

// The per-user cache of verdicts: written atomically; read back only when its
// key is `key` (the same hypervisor build and host kernel), else nullopt.
absl::Status SaveAccelReport(const AccelReport& report, const std::string& cache_file);
std::optional<AccelReport> LoadAccelReport(const std::string& cache_file, const std::string& key);

}  // namespace cove::daemon
