#include "client/output.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sizes.h"

namespace cove::client {

using google::protobuf::util::TimeUtil;

std::string EventKindName(cove::v1::EventKind kind) {
  switch (kind) {
    case cove::v1::EVENT_KIND_MACHINE_SNAPSHOT:
      return "snapshot";
    case cove::v1::EVENT_KIND_MACHINE_CREATED:
      return "created";
    case cove::v1::EVENT_KIND_MACHINE_STATE_CHANGED:
      return "state";
    case cove::v1::EVENT_KIND_MACHINE_DELETED:
      return "deleted";
    case cove::v1::EVENT_KIND_AGENT_CONNECTED:
      return "agent-connected";
    case cove::v1::EVENT_KIND_AGENT_DISCONNECTED:
      return "agent-disconnected";
    case cove::v1::EVENT_KIND_FORWARD_CHANGED:
      return "forward";
    case cove::v1::EVENT_KIND_OOM_KILL:
      return "oom-kill";
    case cove::v1::EVENT_KIND_ACCEL_FALLBACK:
      return "accel-fallback";
    case cove::v1::EVENT_KIND_MOUNT_CHANGED:
      return "mount";
    case cove::v1::EVENT_KIND_MACHINE_UPDATED:
      return "updated";
    case cove::v1::EVENT_KIND_MEMORY_PRESSURE:
      return "memory-pressure";
    default:
      return "unknown";
  }
}

const char* MountTypeName(cove::v1::MountType type) {
  switch (type) {
    case cove::v1::MOUNT_TYPE_VIRTIOFS:
      return "virtiofs";
    case cove::v1::MOUNT_TYPE_9P:
      return "9p";
    default:
      return "auto";
  }
}

const char* MountStateName(cove::v1::MountState state) {
  switch (state) {
    case cove::v1::MOUNT_STATE_PENDING:
      return "pending";
    case cove::v1::MOUNT_STATE_MOUNTED:
      return "mounted";
    case cove::v1::MOUNT_STATE_FAILED:
      return "failed";
    case cove::v1::MOUNT_STATE_HOST_GONE:
      return "host-gone";
    default:
      return "unknown";
  }
}

nlohmann::json AccelVerdictsJson(
    const google::protobuf::RepeatedPtrField<cove::v1::AccelVerdict>& verdicts) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& v : verdicts) {
    nlohmann::json j = {{"accel", AccelName(v.accel())},
                        {"usable", v.usable()},
                        {"reason", v.reason()},
                        {"checked_by", v.checked_by()}};
    if (!v.cpu().empty()) j["cpu"] = v.cpu();
    if (v.has_checked_at() && v.checked_at().seconds() > 0) {
      j["checked_at"] = TimeUtil::ToString(v.checked_at());
    }
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json MachineJson(const cove::v1::Machine& m) {
  const auto& s = m.spec();
  nlohmann::json j = {
      {"name", m.name()},
      {"state", StateName(m.state())},
      {"cpus", s.cpus()},
      {"memory", s.memory_bytes()},
      {"disk", s.disk_bytes()},
      {"arch", s.arch()},
      {"accel", m.accel_in_use() != cove::v1::ACCEL_UNSPECIFIED ? AccelName(m.accel_in_use())
                                                                : AccelName(s.accel())},
      {"accel_requested", AccelName(s.accel())},
      {"accel_reason", m.accel_reason()},
      {"accel_verdicts", AccelVerdictsJson(m.accel_verdicts())},
      {"driver", "qemu"},
      {"image", m.image().path()},
      {"dir", m.dir()},
      {"pid", m.pid()},
      {"error", m.error()},
      {"paths",
       {{"serial_log", m.paths().serial_log()},
        {"qmp_socket", m.paths().debug_qmp_socket()},
        {"agent_socket", m.paths().debug_agent_socket()},
        {"disk", m.paths().disk()}}},
      {"sockets", nlohmann::json::object()},
      {"runtime", s.runtime() == cove::v1::RUNTIME_DOCKER ? "docker" : "containerd"},
      {"restart", s.restart() == cove::v1::RESTART_POLICY_ON_FAILURE ? "on-failure" : "never"},
      {"max_restarts", s.max_restarts()},
      {"restarts", m.restarts()},
      {"autostart", s.autostart()},
      {"foreign_binaries", !s.has_foreign_binaries() || s.foreign_binaries()},
  };
  // Present exactly while the machine runs (the socket files exist then).
  if (!m.sockets().containerd().empty()) j["sockets"]["containerd"] = m.sockets().containerd();
  if (!m.sockets().docker().empty()) j["sockets"]["docker"] = m.sockets().docker();
  j["services"] = nlohmann::json::array();
  for (const auto& svc : m.services()) {
    j["services"].push_back({{"name", svc.name()},
                             {"state", EnumWord(svc.state())},
                             {"pid", svc.pid()},
                             {"restarts", svc.restarts()},
                             {"last_exit", svc.last_exit()}});
  }
  j["reverse_sockets"] = nlohmann::json::array();
  for (const auto& r : s.reverse_sockets()) {
    j["reverse_sockets"].push_back(
        {{"name", r.name()}, {"host_path", r.host_path()}, {"guest_path", r.guest_path()}});
  }
  j["forwards"] = nlohmann::json::array();
  for (const auto& f : m.forwards()) j["forwards"].push_back(ForwardJson(f));
  j["binfmt_handlers"] =
      std::vector<std::string>(m.binfmt_handlers().begin(), m.binfmt_handlers().end());
  j["emulated"] = nlohmann::json::array();
  for (const auto& p : m.emulated()) {
    j["emulated"].push_back({{"pid", p.pid()},
                             {"comm", p.comm()},
                             {"arch", p.arch()},
                             {"cgroup", p.cgroup()},
                             {"container_id", p.container_id()},
                             {"container_name", p.container_name()},
                             {"rss", p.rss_bytes()}});
  }
  j["oom_kills"] = nlohmann::json::array();
  for (const auto& k : m.oom_kills()) j["oom_kills"].push_back(OomKillJson(k));
  j["mounts"] = nlohmann::json::array();
  for (int i = 0; i < s.mounts_size(); ++i) {
    const auto& mount = s.mounts(i);
    nlohmann::json mj = {{"host_path", mount.host_path()},
                         {"guest_path", mount.guest_path()},
                         {"read_only", mount.read_only()},
                         {"type", MountTypeName(mount.type())}};
    // While it runs: what this boot really uses, and how it is.
    if (i < m.mounts_size()) {
      const auto& live = m.mounts(i);
      mj["type"] = MountTypeName(live.mount().type());
      mj["state"] = MountStateName(live.state());
      mj["tag"] = live.tag();
      mj["watched_dirs"] = live.watched_dirs();
      mj["host_events"] = live.host_events();
      if (!live.host_events_note().empty()) mj["host_events_note"] = live.host_events_note();
      if (!live.error().empty()) mj["error"] = live.error();
    }
    j["mounts"].push_back(std::move(mj));
  }
  j["port_rules"] = nlohmann::json::array();
  for (const auto& r : s.port_rules()) {
    nlohmann::json rule = {{"proto", r.proto() == cove::v1::PROTO_TCP   ? "tcp"
                                     : r.proto() == cove::v1::PROTO_UDP ? "udp"
                                                                        : "any"}};
    if (!r.guest_ip().empty()) rule["guest_ip"] = r.guest_ip();
    if (r.guest_port_start() != 0) {
      rule["guest_port_range"] = {r.guest_port_start(), r.guest_port_end()};
    }
    if (!r.host_ip().empty()) rule["host_ip"] = r.host_ip();
    if (r.host_port_start() != 0) rule["host_port"] = r.host_port_start();
    if (r.ignore()) rule["ignore"] = true;
    j["port_rules"].push_back(rule);
  }
  j["static_forwards"] = nlohmann::json::array();
  for (const auto& f : s.static_forwards()) {
    j["static_forwards"].push_back({{"proto", ProtoName(f.proto())},
                                    {"host_ip", f.host_ip().empty() ? "127.0.0.1" : f.host_ip()},
                                    {"host_port", f.host_port()},
                                    {"guest_port", f.guest_port()}});
  }
  if (m.has_created_at()) j["created_at"] = TimeUtil::ToString(m.created_at());
  if (m.has_started_at()) j["started_at"] = TimeUtil::ToString(m.started_at());
  if (m.has_guest() && !m.guest().agent_version().empty()) {
    const auto& g = m.guest();
    j["guest"] = {{"agent_version", g.agent_version()},
                  {"kernel", g.kernel_release()},
                  {"arch", g.arch()},
                  {"boot_to_agent_ms", g.boot_to_agent_ms()},
                  {"start_to_ready_ms", g.start_to_ready_ms()},
                  {"mem_total", g.mem_total_bytes()},
                  {"mem_available", g.mem_available_bytes()},
                  {"memory_pressure", g.memory_pressure()},
                  {"disk_total", g.disk_total_bytes()},
                  {"disk_free", g.disk_free_bytes()},
                  {"clock_offset_ms", g.clock_offset_ms()}};
    if (g.psi()) {
      j["guest"]["psi_some_avg10"] = g.psi_some_avg10();
      j["guest"]["psi_full_avg10"] = g.psi_full_avg10();
    }
    if (g.has_network()) {
      const auto& n = g.network();
      nlohmann::json addresses = nlohmann::json::array();
      for (const auto& a : n.addresses()) {
        addresses.push_back({{"interface", a.interface()},
                             {"address", a.address()},
                             {"prefix_length", a.prefix_length()}});
      }
      j["guest"]["network"] = {{"addresses", std::move(addresses)},
                               {"gateway", n.gateway()},
                               {"gateway_interface", n.gateway_interface()},
                               {"nameservers", n.nameservers()}};
    }
  }
  return j;
}

nlohmann::json ImageJson(const cove::v1::Image& image) {
  nlohmann::json j = {{"name", image.name()},
                      {"path", image.path()},
                      {"arch", image.arch()},
                      {"suite", image.suite()},
                      {"kernel", image.kernel_version()},
                      {"size", image.size_bytes()},
                      {"packages", image.packages()},
                      {"sha256", image.sha256()},
                      {"used_by", image.used_by()}};
  return j;
}

nlohmann::json EventJson(const cove::v1::Event& e) {
  nlohmann::json j = {{"kind", EventKindName(e.kind())},
                      {"machine", e.machine_name()},
                      {"message", e.message()},
                      {"sequence", e.sequence()}};
  if (e.has_time()) j["time"] = TimeUtil::ToString(e.time());
  if (e.has_machine()) j["state"] = StateName(e.machine().state());
  if (e.kind() == cove::v1::EVENT_KIND_MACHINE_STATE_CHANGED) {
    j["previous_state"] = StateName(e.previous_state());
  }
  if (e.has_forward()) j["forward"] = ForwardJson(e.forward());
  if (e.has_mount()) {
    j["mount"] = {{"host_path", e.mount().mount().host_path()},
                  {"guest_path", e.mount().mount().guest_path()},
                  {"type", MountTypeName(e.mount().mount().type())},
                  {"state", MountStateName(e.mount().state())},
                  {"error", e.mount().error()}};
  }
  if (e.has_oom_kill()) j["oom_kill"] = OomKillJson(e.oom_kill());
  return j;
}

nlohmann::json OomKillJson(const cove::v1::OomKill& k) {
  nlohmann::json j = {{"pid", k.pid()},
                      {"process", k.process()},
                      {"rss_bytes", k.rss_bytes()},
                      {"scope", k.scope() == cove::v1::OOM_SCOPE_CGROUP ? "cgroup" : "machine"},
                      {"limit_bytes", k.limit_bytes()},
                      {"machine_memory_bytes", k.machine_memory_bytes()},
                      {"cgroup", k.cgroup()},
                      {"container_id", k.container_id()},
                      {"container_name", k.container_name()},
                      {"emulated_arch", k.emulated_arch()},
                      {"summary", k.summary()},
                      {"fix", k.fix()},
                      {"guest_uptime_ms", k.guest_uptime_ms()}};
  if (k.has_time()) j["time"] = TimeUtil::ToString(k.time());
  if (k.unlogged_count() > 0) j["unlogged_count"] = k.unlogged_count();
  return j;
}

nlohmann::json ForwardJson(const cove::v1::Forward& f) {
  nlohmann::json j = {{"proto", ProtoName(f.proto())}, {"host_ip", f.host_ip()},
                      {"host_port", f.host_port()},    {"guest_ip", f.guest_ip()},
                      {"guest_port", f.guest_port()},  {"state", ForwardStateName(f.state())},
                      {"static", f.static_forward()},  {"connections", f.connections()},
                      {"retries", f.retries()}};
  if (!f.error().empty()) j["error"] = f.error();
  if (!f.holder().empty()) j["holder"] = f.holder();
  if (f.route() == cove::v1::FORWARD_ROUTE_AGENT) j["route"] = "agent";
  if (f.route() == cove::v1::FORWARD_ROUTE_NETWORK) j["route"] = "network";
  return j;
}

std::string ForwardTable(const cove::v1::Machine& m) {
  std::string out = absl::StrFormat("%-5s %-22s %-22s %-10s %5s %s\n", "PROTO", "HOST", "GUEST",
                                    "STATE", "CONNS", "NOTE");
  for (const auto& f : m.forwards()) {
    std::string note = f.error();
    if (note.empty() && f.static_forward()) note = "static";
    out += absl::StrFormat("%-5s %-22s %-22s %-10s %5d %s\n", ProtoName(f.proto()),
                           Endpoint(f.host_ip(), f.host_port()),
                           Endpoint(f.guest_ip(), f.guest_port()), ForwardStateName(f.state()),
                           f.connections(), note);
  }
  return out;
}

std::string MachineTable(const cove::v1::ListMachinesResponse& list) {
  std::string out = absl::StrFormat("%-20s %-9s %-7s %4s %8s %8s %-5s %s\n", "NAME", "STATE",
                                    "ARCH", "CPUS", "MEMORY", "DISK", "ACCEL", "ERROR");
  for (const auto& m : list.machines()) {
    const auto& s = m.spec();
    std::string accel = m.accel_in_use() != cove::v1::ACCEL_UNSPECIFIED
                            ? AccelName(m.accel_in_use())
                            : AccelName(s.accel());
    out += absl::StrFormat("%-20s %-9s %-7s %4d %8s %8s %-5s %s\n", m.name(), StateName(m.state()),
                           s.arch(), s.cpus(), FormatSize(s.memory_bytes()),
                           FormatSize(s.disk_bytes()), accel, m.error().substr(0, 60));
  }
  return out;
}

std::string ImageTable(const cove::v1::ListImagesResponse& list) {
  std::string out =
      absl::StrFormat("%-28s %-8s %-24s %8s %s\n", "NAME", "ARCH", "KERNEL", "SIZE", "USED BY");
  for (const auto& img : list.images()) {
    std::string users;
    for (const auto& u : img.used_by()) users += (users.empty() ? "" : ",") + u;
    out += absl::StrFormat("%-28s %-8s %-24s %8s %s\n", img.name(), img.arch(),
                           img.kernel_version(), FormatSize(img.size_bytes()), users);
  }
  return out;
}

}  // namespace cove::client
