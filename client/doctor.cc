#include "client/doctor.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/api_names.h"
#include "common/sizes.h"

namespace cove::client {
namespace {

std::string PlatformArch(const std::string& arch) {
  if (arch == "aarch64") return "arm64";
  if (arch == "x86_64") return "amd64";
  return arch;
}

void Host(const cove::v1::DaemonInfo& info, std::vector<Finding>& out) {
  if (info.qemu_path().empty()) {
    out.push_back({"error", "host", "no qemu for the host's architecture: no machine can start",
                   "install it: sudo apt-get install qemu-system-x86 qemu-system-arm qemu-utils"});
  } else {
    out.push_back({"ok", "host", absl::StrCat(info.qemu_version(), " at ", info.qemu_path()), ""});
  }
  for (const auto& v : info.accels()) {
    const std::string by = v.checked_by() == "boot" ? " (found by a real boot)" : "";
    if (v.usable()) {
      out.push_back({"ok", "host", absl::StrCat(AccelName(v.accel()), " works", by), ""});
    } else if (v.accel() != cove::v1::ACCEL_TCG) {
      out.push_back({"info", "host",
                     absl::StrCat(AccelName(v.accel()), " is unusable", by, ": ", v.reason()), ""});
    }
  }
  if (info.auto_accel() == cove::v1::ACCEL_TCG) {
    out.push_back({"warning", "host",
                   "no hardware virtualization works here: every machine runs under tcg, its "
                   "whole CPU emulated, several times slower than under a hypervisor",
                   "where you can, use a host whose kvm (Linux) or hvf (macOS) works; cove "
                   "version --probe checks again"});
  }
  if (info.home_total_bytes() > 0) {
    const uint64_t free = info.home_free_bytes();
    const std::string what = absl::StrCat(FormatSize(free), " free of ",
                                          FormatSize(info.home_total_bytes()), " in ", info.home());
    if (free < 512 * kMiB) {
      out.push_back({"error", "host", what + ": machines cannot grow their disks or start",
                     "free space there, or delete unused machines and images (cove delete, cove "
                     "image delete)"});
    } else if (free < 4 * kGiB) {
      out.push_back({"warning", "host", what, "free space there: machine disks grow into it"});
    } else {
      out.push_back({"ok", "host", what, ""});
    }
  }
}

// The guest's own network: without a route out or a nameserver, pulls and
// builds fail in ways that look like the registry's fault.
void AddNetworkFindings(const cove::v1::Machine& m, const std::string& subject,
                        std::vector<Finding>& out) {
  const auto& n = m.guest().network();
  const char* missing =
      n.gateway().empty()       ? "no default route: it cannot reach the host or the internet"
      : n.nameservers().empty() ? "no nameserver in /etc/resolv.conf: names do not resolve"
                                : nullptr;
  if (missing != nullptr) {
    out.push_back({"error", subject,
                   absl::StrCat("the guest has ", missing, " (image pulls, apt and builds fail)"),
                   absl::StrCat("cove restart ", m.name(), " sets up its network again")});
    return;
  }
  std::string addresses;
  for (const auto& a : n.addresses()) {
    absl::StrAppend(&addresses, addresses.empty() ? "" : ", ", a.address(), "/", a.prefix_length());
  }
  out.push_back({"ok", subject,
                 absl::StrCat("network: ", addresses.empty() ? "no address" : addresses, " via ",
                              n.gateway(), ", nameserver ", absl::StrJoin(n.nameservers(), ", ")),
                 ""});
}

void Machine(const cove::v1::DaemonInfo& info, const cove::v1::Machine& m,
             std::vector<Finding>& out) {
  const std::string subject = "machine " + m.name();
  if (m.state() == cove::v1::MACHINE_STATE_ERROR) {
    out.push_back(
        {"error", subject, "is in error: " + m.error(),
         absl::StrCat("see cove logs ", m.name(), "; cove start ", m.name(), " tries again")});
  }
  const std::string arch = m.spec().arch().empty() ? info.host_arch() : m.spec().arch();
  if (arch != info.host_arch()) {
    out.push_back({"warning", subject,
                   absl::StrCat("is ", arch, " on an ", info.host_arch(),
                                " host: emulated whole under tcg, every instruction translated"),
                   absl::StrCat("unless you need a whole ", arch, " kernel, use an ",
                                info.host_arch(), " machine: ", PlatformArch(arch),
                                " containers still run in it, through binfmt")});
  }
  if (m.state() != cove::v1::MACHINE_STATE_RUNNING) return;
  if (m.accel_in_use() == cove::v1::ACCEL_TCG && arch == info.host_arch()) {
    out.push_back({"info", subject, "runs under tcg (no hardware virtualization)", ""});
  }
  const auto& g = m.guest();
  if (g.memory_pressure()) {
    out.push_back(
        {"warning", subject,
         absl::StrFormat("memory pressure is high: tasks waited for memory %.1f%% of the last 10 s "
                         "(%s of %s available)",
                         g.psi_some_avg10(), FormatSize(g.mem_available_bytes()),
                         FormatSize(g.mem_total_bytes())),
         absl::StrCat("cove stop ", m.name(), " && cove set ", m.name(), " --memory ",
                      FormatSize(2 * m.spec().memory_bytes()))});
  } else if (g.mem_total_bytes() > 0) {
    out.push_back({"ok", subject,
                   absl::StrFormat("memory: %s of %s available, pressure %.1f%%",
                                   FormatSize(g.mem_available_bytes()),
                                   FormatSize(g.mem_total_bytes()), g.psi_some_avg10()),
                   ""});
  }
  for (const auto& k : m.oom_kills()) {
    const std::string s = k.container_name().empty()
                              ? subject
                              : absl::StrCat("container ", k.container_name(), " in ", m.name());
    out.push_back({"warning", s, "OOM kill: " + k.summary(), k.fix()});
  }
  if (g.disk_total_bytes() > 0) {
    const double free_share = static_cast<double>(g.disk_free_bytes()) / g.disk_total_bytes();
    const std::string what = absl::StrCat("disk: ", FormatSize(g.disk_free_bytes()), " free of ",
                                          FormatSize(g.disk_total_bytes()));
    if (free_share < 0.02) {
      out.push_back(
          {"error", subject, what + ": writes fail",
           absl::StrCat("docker system prune in it, or cove stop ", m.name(), " && cove set ",
                        m.name(), " --disk ", FormatSize(2 * m.spec().disk_bytes()))});
    } else if (free_share < 0.10) {
      out.push_back(
          {"warning", subject, what,
           absl::StrCat("docker system prune in it, or cove set ", m.name(), " --disk (stopped)")});
    } else {
      out.push_back({"ok", subject, what, ""});
    }
  }
  if (!g.agent_version().empty() && (g.clock_offset_ms() > 2000 || g.clock_offset_ms() < -2000)) {
    out.push_back({"warning", subject,
                   absl::StrCat("the guest clock is ", g.clock_offset_ms(),
                                " ms off the host's: TLS and build tools may fail"),
                   absl::StrCat("cove restart ", m.name(), " sets it from the host")});
  }
  if (g.has_network()) AddNetworkFindings(m, subject, out);
  for (const auto& f : m.forwards()) {
    if (f.state() != cove::v1::FORWARD_STATE_CONFLICT &&
        f.state() != cove::v1::FORWARD_STATE_FAILED) {
      continue;
    }
    out.push_back(
        {"warning", subject,
         absl::StrCat("forward ", Endpoint(f.host_ip(), f.host_port()), " -> guest port ",
                      f.guest_port(), " is ", ForwardStateName(f.state()),
                      f.error().empty() ? "" : ": " + f.error(),
                      f.holder().empty() ? "" : " (held by " + f.holder() + ")"),
         "free that host port, or map it elsewhere: cove forward / cove set --port-rule"});
  }
  for (const auto& mount : m.mounts()) {
    if (mount.host_events() || mount.state() != cove::v1::MOUNT_STATE_MOUNTED) continue;
    out.push_back({"warning", subject,
                   absl::StrCat("mount ", mount.mount().host_path(),
                                mount.mount().guest_path() == mount.mount().host_path()
                                    ? ""
                                    : " at " + mount.mount().guest_path(),
                                " is 9p: host file changes do not wake watchers in the guest"),
                   mount.host_events_note()});
  }
  // Emulated containers, one finding each.
  std::map<std::string, std::set<std::string>> archs;  // container -> archs
  for (const auto& p : m.emulated()) {
    std::string c = !p.container_name().empty() ? p.container_name()
                    : !p.container_id().empty() ? p.container_id().substr(0, 12)
                                                : "";
    archs[c].insert(p.arch());
  }
  for (const auto& [container, set] : archs) {
    for (const std::string& a : set) {
      const std::string s =
          container.empty() ? subject : absl::StrCat("container ", container, " in ", m.name());
      out.push_back(
          {"warning", s,
           absl::StrCat("runs ", PlatformArch(a), " (", a,
                        ") binaries through binfmt (qemu-user): about ", kBinfmtCost,
                        " and more memory than native"),
           absl::StrCat("use an image for ", PlatformArch(arch), " (docker run --platform linux/",
                        PlatformArch(arch), ", or a multi-arch image)")});
    }
  }
}

}  // namespace

std::vector<Finding> Diagnose(const cove::v1::DaemonInfo& info,
                              const std::vector<cove::v1::Machine>& machines) {
  std::vector<Finding> out;
  Host(info, out);
  for (const auto& m : machines) Machine(info, m, out);
  return out;
}

}  // namespace cove::client
