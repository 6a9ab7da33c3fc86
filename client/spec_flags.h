// The machine flags shared by create and start: --cpus, --memory, --disk,
// --arch, --accel, --image, --runtime, --reverse-socket, --port-rule, --forward,
// --restart, --autostart.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cove/v1/machines.pb.h"

namespace cove::client {

struct SpecFlags {
  unsigned cpus = 0;
  CLI::Option* cpus_option = nullptr;  // to tell --cpus 0 from no --cpus
  std::string memory, disk, arch, accel, image, runtime;
  // NAME=HOST_PATH:GUEST_PATH
  std::vector<std::string> reverse_sockets;
  // --port-rule (client/port_flags.h) and --forward [HOSTIP:]HOSTPORT:GUESTPORT[/udp]
  std::vector<std::string> port_rules, forwards;
  std::string restart;  // never | on-failure[:N]
  bool autostart = false;
  bool no_foreign_binaries = false;
  // HOST[:GUEST][:ro] or "none"; --mount-type auto | virtiofs | 9p.
  std::vector<std::string> mounts;
  std::string mount_type;

  void Add(CLI::App& cmd);
  // Parsed sizes and enums; unset flags stay zero so coved fills defaults.
  absl::StatusOr<cove::v1::MachineSpec> ToSpec() const;
};

// --mount HOST[:GUEST][:ro|:rw] (repeatable) or --mount none, with
// --mount-type auto|virtiofs|9p for all of them: into `mounts` and
// `no_mounts` of a MachineSpec or UpdateMachineRequest. `~` and relative host
// paths are made absolute here (coved's home and working directory are not
// the caller's); coved resolves symlinks.
absl::Status ParseMounts(const std::vector<std::string>& flags, const std::string& type,
                         google::protobuf::RepeatedPtrField<cove::v1::Mount>* mounts,
                         bool* no_mounts);

// --accel: "auto", "kvm", "hvf" or "tcg".
absl::StatusOr<cove::v1::Accel> ParseAccel(const std::string& text);

// --restart: "never", "on-failure" or "on-failure:N" (N from 1 to 100).
absl::StatusOr<std::pair<cove::v1::RestartPolicy, uint32_t>> ParseRestartPolicy(
    const std::string& text);

// Progress lines of a start or stop stream, on stderr.
void PrintProgress(const std::string& machine, const std::string& phase, const std::string& message,
                   uint64_t elapsed_ms);

}  // namespace cove::client
