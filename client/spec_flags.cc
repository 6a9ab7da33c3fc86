#include "client/spec_flags.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/port_flags.h"
#include "common/sizes.h"

namespace cove::client {

void SpecFlags::Add(CLI::App& cmd) {
  cpus_option = cmd.add_option("--cpus", cpus, "Virtual CPUs (default 2)");
  cmd.add_option("--memory", memory, "Memory, e.g. 4GiB, 512MiB, or 4 for 4 GiB (default 2GiB)");
  cmd.add_option("--disk", disk, "Disk size, e.g. 20GiB or 20 (default 20GiB)");
  cmd.add_option("--arch", arch, "Guest architecture: x86_64 or aarch64 (default: the host's)");
  cmd.add_option("--accel", accel, "auto, kvm, hvf or tcg (default auto; env COVE_ACCEL)");
  cmd.add_option("--image", image, "Image directory or cached image name");
  cmd.add_option("--runtime", runtime, "Container runtime: containerd (default) or docker");
  cmd.add_option("--port-rule", port_rules,
                 "Port forwarding rule, first match wins, e.g. guestPort=8080,hostPort=18080 or "
                 "guestPortRange=3000-3999,ignore (keys: guestIP guestPort guestPortRange hostIP "
                 "hostPort hostPortRange proto ignore)");
  cmd.add_option("--forward", forwards,
                 "Static forward [HOSTIP:]HOSTPORT:GUESTPORT[/udp], open whenever it runs");
  cmd.add_option("--reverse-socket", reverse_sockets,
                 "Make a host socket reachable in the guest: NAME=HOST_PATH:GUEST_PATH "
                 "(repeatable), e.g. ssh=$SSH_AUTH_SOCK:/run/host-ssh.sock");
  cmd.add_option("--restart", restart,
                 "When qemu dies without being asked: never (default) or on-failure[:N] (start "
                 "it again, at most N times in a row, default 3)");
  cmd.add_flag("--autostart", autostart,
               "Start this machine when coved starts at login (see `cove daemon install`)");
  cmd.add_option(
      "--mount", mounts,
      "Share a host directory: HOST[:GUEST][:ro][:virtiofs|9p], repeatable (default: your home "
      "directory, writable, at the same path); --mount none for no mounts");
  cmd.add_flag("--no-foreign-binaries", no_foreign_binaries,
               "Do not run other architectures' binaries (e.g. linux/arm64 containers on x86_64) "
               "through the image's qemu-user interpreters");
  cmd.add_option("--mount-type", mount_type,
                 "How mounts reach the guest: auto (default: virtiofs where a virtiofsd runs as "
                 "you, else 9p), virtiofs or 9p");
}

absl::Status ParseMounts(const std::vector<std::string>& flags, const std::string& type,
                         google::protobuf::RepeatedPtrField<cove::v1::Mount>* mounts,
                         bool* no_mounts) {
  cove::v1::MountType t = cove::v1::MOUNT_TYPE_AUTO;
  if (type == "virtiofs") {
    t = cove::v1::MOUNT_TYPE_VIRTIOFS;
  } else if (type == "9p") {
    t = cove::v1::MOUNT_TYPE_9P;
  } else if (!type.empty() && type != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--mount-type \"", type, "\" is not auto, virtiofs or 9p"));
  }
  for (const std::string& flag : flags) {
    if (flag == "none") {
      if (flags.size() > 1) {
        return absl::InvalidArgumentError("--mount none cannot go with other --mount flags");
      }
      *no_mounts = true;
      return absl::OkStatus();
    }
    std::vector<std::string> parts = absl::StrSplit(flag, ':');
    cove::v1::Mount m;
    m.set_type(t);
    // Options at the end: ro or rw, and a type for this mount alone.
    while (parts.size() > 1) {
      const std::string& opt = parts.back();
      if (opt == "ro" || opt == "rw") {
        m.set_read_only(opt == "ro");
      } else if (opt == "virtiofs" || opt == "9p") {
        m.set_type(opt == "9p" ? cove::v1::MOUNT_TYPE_9P : cove::v1::MOUNT_TYPE_VIRTIOFS);
      } else {
        break;
      }
      parts.pop_back();
    }
    if (parts.empty() || parts.size() > 2 || parts[0].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--mount \"", flag, "\" is not HOST[:GUEST][:ro][:virtiofs|9p] (or none)"));
    }
    std::string host = parts[0];
    if (host == "~" || absl::StartsWith(host, "~/")) {
      const char* home = std::getenv("HOME");
      if (home == nullptr) return absl::InvalidArgumentError("--mount ~...: HOME is not set");
      host = std::string(home) + host.substr(1);
    }
    m.set_host_path(std::filesystem::absolute(host).lexically_normal().string());
    while (m.host_path().size() > 1 && m.host_path().back() == '/') {
      m.mutable_host_path()->pop_back();
    }
    if (parts.size() == 2) m.set_guest_path(parts[1]);
    *mounts->Add() = std::move(m);
  }
  return absl::OkStatus();
}

absl::StatusOr<cove::v1::Accel> ParseAccel(const std::string& text) {
  if (text == "auto") return cove::v1::ACCEL_AUTO;
  if (text == "kvm") return cove::v1::ACCEL_KVM;
  if (text == "hvf") return cove::v1::ACCEL_HVF;
  if (text == "tcg") return cove::v1::ACCEL_TCG;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown accelerator \"", text, "\"; use auto, kvm, hvf or tcg"));
}

absl::StatusOr<std::pair<cove::v1::RestartPolicy, uint32_t>> ParseRestartPolicy(
    const std::string& text) {
  if (text == "never") return std::make_pair(cove::v1::RESTART_POLICY_NEVER, 0u);
  if (text == "on-failure") return std::make_pair(cove::v1::RESTART_POLICY_ON_FAILURE, 0u);
  uint32_t limit = 0;
  if (absl::StartsWith(text, "on-failure:") &&
      absl::SimpleAtoi(text.substr(sizeof("on-failure:") - 1), &limit) && limit >= 1 &&
      limit <= 100) {
    return std::make_pair(cove::v1::RESTART_POLICY_ON_FAILURE, limit);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--restart \"", text, "\" is not never, on-failure or on-failure:N with N from 1 to 100"));
}

absl::StatusOr<cove::v1::MachineSpec> SpecFlags::ToSpec() const {
  cove::v1::MachineSpec spec;
  if (cpus_option != nullptr && cpus_option->count() > 0 && cpus == 0) {
    return absl::InvalidArgumentError("--cpus 0: a machine needs at least 1 CPU");
  }
  spec.set_cpus(cpus);
  if (!memory.empty()) {
    auto m = ParseSize(memory, "--memory");
    if (!m.ok()) return m.status();
    spec.set_memory_bytes(*m);
  }
  if (!disk.empty()) {
    auto d = ParseSize(disk, "--disk");
    if (!d.ok()) return d.status();
    spec.set_disk_bytes(*d);
  }
  spec.set_arch(arch);
  std::string a = accel;
  if (a.empty()) {
    if (const char* env = std::getenv("COVE_ACCEL")) a = env;
  }
  auto parsed_accel = ParseAccel(a.empty() ? "auto" : a);
  if (!parsed_accel.ok()) return parsed_accel.status();
  spec.set_accel(*parsed_accel);
  if (runtime.empty() || runtime == "containerd") {
    spec.set_runtime(runtime.empty() ? cove::v1::RUNTIME_UNSPECIFIED
                                     : cove::v1::RUNTIME_CONTAINERD);
  } else if (runtime == "docker") {
    spec.set_runtime(cove::v1::RUNTIME_DOCKER);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown runtime \"", runtime, "\"; use containerd or docker"));
  }
  for (const std::string& r : reverse_sockets) {
    const size_t eq = r.find('=');
    const size_t colon = eq == std::string::npos ? std::string::npos : r.find(':', eq);
    if (eq == std::string::npos || colon == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--reverse-socket \"", r, "\" is not NAME=HOST_PATH:GUEST_PATH"));
    }
    auto* rs = spec.add_reverse_sockets();
    rs->set_name(r.substr(0, eq));
    std::string host = r.substr(eq + 1, colon - eq - 1);
    if (!host.empty()) host = std::filesystem::absolute(host).lexically_normal().string();
    rs->set_host_path(host);
    rs->set_guest_path(r.substr(colon + 1));
  }
  for (const std::string& r : port_rules) {
    auto rule = ParsePortRule(r);
    if (!rule.ok()) return rule.status();
    *spec.add_port_rules() = *rule;
  }
  for (const std::string& f : forwards) {
    auto forward = ParseForwardSpec(f);
    if (!forward.ok()) return forward.status();
    *spec.add_static_forwards() = *forward;
  }
  if (!restart.empty()) {
    auto policy = ParseRestartPolicy(restart);
    if (!policy.ok()) return policy.status();
    spec.set_restart(policy->first);
    spec.set_max_restarts(policy->second);
  }
  spec.set_autostart(autostart);
  if (no_foreign_binaries) spec.set_foreign_binaries(false);  // unset: coved's default, true
  // --mount-type alone applies to the default mount, the home directory.
  const std::vector<std::string> home_only = {"~"};
  bool no_mounts = false;
  if (auto st = ParseMounts(mounts.empty() && !mount_type.empty() ? home_only : mounts, mount_type,
                            spec.mutable_mounts(), &no_mounts);
      !st.ok()) {
    return st;
  }
  spec.set_no_mounts(no_mounts);
  // A path is made absolute here: coved's working directory is not ours.
  if (image.find('/') != std::string::npos) {
    spec.set_image(std::filesystem::absolute(image).lexically_normal().string());
  } else {
    spec.set_image(image);
  }
  return spec;
}

void PrintProgress(const std::string& machine, const std::string& phase, const std::string& message,
                   uint64_t elapsed_ms) {
  std::cerr << absl::StrFormat("%s: %-18s %s%s(%.1fs)\n", machine, phase, message,
                               message.empty() ? "" : " ", elapsed_ms / 1000.0);
}

}  // namespace cove::client
