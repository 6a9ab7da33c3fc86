// Machine: what `cove set` (the Update RPC) changes, all or nothing.
#include "absl/strings/str_cat.h"
#include "common/api_names.h"
#include "common/errors.h"
#include "common/sizes.h"
#include "daemon/forward/port_rules.h"
#include "daemon/machine/guest_forwards.h"
#include "daemon/machine/machine.h"
#include "daemon/machine/spec.h"
#include "daemon/mount/mount_spec.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

// "cpus 2 -> 4, memory 2GiB -> 4GiB" for the event and the log.
std::string DescribeSizeChange(const cove::v1::MachineSpec& before,
                               const cove::v1::MachineSpec& after) {
  std::string out;
  auto add = [&out](const std::string& part) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", part);
  };
  if (before.cpus() != after.cpus())
    add(absl::StrCat("cpus ", before.cpus(), " -> ", after.cpus()));
  if (before.memory_bytes() != after.memory_bytes()) {
    add(absl::StrCat("memory ", FormatSize(before.memory_bytes()), " -> ",
                     FormatSize(after.memory_bytes())));
  }
  if (before.disk_bytes() != after.disk_bytes()) {
    add(absl::StrCat("disk ", FormatSize(before.disk_bytes()), " -> ",
                     FormatSize(after.disk_bytes())));
  }
  return out;
}

}  // namespace

absl::Status Machine::RequireStopped(const std::string& what) const {
  const bool down =
      state() == cove::v1::MACHINE_STATE_STOPPED || state() == cove::v1::MACHINE_STATE_ERROR;
  if (down && !boot_) return absl::OkStatus();
  return Tagged(absl::FailedPreconditionError(absl::StrCat(
                    "machine '", name(), "' is ", StateName(state()), "; its ", what,
                    " change only while it is stopped: `cove stop ", name(), "` first")),
                cove::v1::MACHINE_NOT_STOPPED);
}

absl::Status Machine::ChangeSpec(
    const std::function<absl::Status(cove::v1::MachineSpec&)>& change,
    const std::function<absl::Status(const cove::v1::MachineSpec&)>& commit) {
  if (!record_.has_spec()) {
    return Tagged(absl::FailedPreconditionError(
                      absl::StrCat("machine '", name(), "' cannot be changed: ", record_.error())),
                  cove::v1::INVALID_SPEC);
  }
  cove::v1::MachineSpec spec = record_.spec();
  if (auto st = change(spec); !st.ok()) return OrReason(st, cove::v1::INVALID_SPEC);
  if (auto st = CheckPortSettings(spec); !st.ok()) {
    return OrReason(st, cove::v1::INVALID_SPEC, {{"field", "spec.port_rules"}});
  }
  if (auto st = NormalizeRestart(spec); !st.ok()) {
    return OrReason(st, cove::v1::INVALID_SPEC, {{"field", "spec.restart_policy"}});
  }
  if (commit) {
    if (auto st = commit(spec); !st.ok()) return st;
  }
  const std::string sizes = DescribeSizeChange(record_.spec(), spec);
  *record_.mutable_spec() = std::move(spec);
  Persist();
  if (forwards_) forwards_->SetSpec(record_.spec());
  if (record_.spec().restart() != cove::v1::RESTART_POLICY_ON_FAILURE) restart_timer_.Stop();
  if (!sizes.empty()) spdlog::info("{}: {}", name(), sizes);
  Publish(cove::v1::EVENT_KIND_MACHINE_UPDATED, sizes.empty() ? "settings changed" : sizes);
  return absl::OkStatus();
}

absl::Status Machine::ChangeSettings(const Settings& settings) {
  const uint64_t disk_before = record_.spec().disk_bytes();
  return ChangeSpec(
      [this, &settings, disk_before](cove::v1::MachineSpec& spec) {
        if (settings.port_rules) *spec.mutable_port_rules() = *settings.port_rules;
        if (settings.restart) {
          spec.set_restart(settings.restart->first);
          spec.set_max_restarts(settings.restart->second);
        }
        if (settings.autostart) spec.set_autostart(*settings.autostart);
        if (settings.runtime && *settings.runtime != spec.runtime()) {
          const char* want =
              *settings.runtime == cove::v1::RUNTIME_DOCKER ? "docker" : "containerd";
          if (!RequireStopped("runtime").ok()) {
            return Tagged(absl::FailedPreconditionError(
                              absl::StrCat("machine '", name(), "' is ", StateName(state()),
                                           "; stop it to switch it to the ", want, " runtime")),
                          cove::v1::MACHINE_NOT_STOPPED);
          }
          spec.set_runtime(*settings.runtime);
        }
        if (settings.foreign_binaries) spec.set_foreign_binaries(*settings.foreign_binaries);
        if (settings.mounts || settings.no_mounts) {
          if (auto st = RequireStopped("mounts"); !st.ok()) return st;
          if (settings.mounts) *spec.mutable_mounts() = *settings.mounts;
          if (settings.no_mounts) spec.set_no_mounts(*settings.no_mounts);
        }
        const HostResources host = HostResources::Probe(record_.dir());
        if (settings.accel) {
          if (auto st = CheckAccel(spec.arch(), *settings.accel, host); !st.ok()) return st;
          spec.set_accel(*settings.accel);
        }
        if (settings.cpus || settings.memory_bytes || settings.disk_bytes) {
          if (auto st = RequireStopped("CPUs, memory and disk"); !st.ok()) return st;
          if (settings.cpus) spec.set_cpus(*settings.cpus);
          if (settings.memory_bytes) spec.set_memory_bytes(*settings.memory_bytes);
          if (settings.disk_bytes) spec.set_disk_bytes(*settings.disk_bytes);
          if (auto st = CheckSizes(spec, host); !st.ok()) return st;
          if (spec.disk_bytes() < disk_before) {
            return WithReason(
                absl::InvalidArgumentError(absl::StrCat(
                    "--disk ", FormatSize(spec.disk_bytes()), " is smaller than the disk's ",
                    FormatSize(disk_before),
                    ": a disk only grows (its file system cannot shrink under the guest's data)")),
                cove::v1::INVALID_SPEC, {{"field", "spec.disk_bytes"}});
          }
        }
        return absl::OkStatus();
      },
      [this, disk_before](const cove::v1::MachineSpec& spec) {
        if (spec.disk_bytes() <= disk_before) return absl::OkStatus();
        return env_.driver.GrowDisk(record_.paths().disk(), spec.disk_bytes());
      });
}

}  // namespace cove::daemon
