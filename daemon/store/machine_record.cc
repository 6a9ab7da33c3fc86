#include "daemon/store/machine_record.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cove::daemon {
namespace {

namespace api = cove::v1;
namespace rec = cove::store::v1;

// Each enum maps value by value, so a rename or renumbering on either side
// changes a table here, never the other side. The first row is the zero
// value, where an unknown value falls (tests check that none is unknown).
template <typename Api, typename Rec>
struct EnumRow {
  Api api;
  Rec rec;
};

template <typename Api, typename Rec, size_t N>
Rec ToRec(const EnumRow<Api, Rec> (&table)[N], Api value) {
  for (const auto& row : table) {
    if (row.api == value) return row.rec;
  }
  return table[0].rec;
}

template <typename Api, typename Rec, size_t N>
Api ToApi(const EnumRow<Api, Rec> (&table)[N], Rec value) {
  for (const auto& row : table) {
    if (row.rec == value) return row.api;
  }
  return table[0].api;
}

constexpr EnumRow<api::MachineState, rec::MachineState> kStates[] = {
    {api::MACHINE_STATE_UNSPECIFIED, rec::MACHINE_STATE_UNSPECIFIED},
    {api::MACHINE_STATE_STOPPED, rec::MACHINE_STATE_STOPPED},
    {api::MACHINE_STATE_STARTING, rec::MACHINE_STATE_STARTING},
    {api::MACHINE_STATE_RUNNING, rec::MACHINE_STATE_RUNNING},
    {api::MACHINE_STATE_STOPPING, rec::MACHINE_STATE_STOPPING},
    {api::MACHINE_STATE_ERROR, rec::MACHINE_STATE_ERROR},
};
constexpr EnumRow<api::Accel, rec::Accel> kAccels[] = {
    {api::ACCEL_UNSPECIFIED, rec::ACCEL_UNSPECIFIED},
    {api::ACCEL_AUTO, rec::ACCEL_AUTO},
    {api::ACCEL_KVM, rec::ACCEL_KVM},
    {api::ACCEL_HVF, rec::ACCEL_HVF},
    {api::ACCEL_TCG, rec::ACCEL_TCG},
};
constexpr EnumRow<api::Driver, rec::Driver> kDrivers[] = {
    {api::DRIVER_UNSPECIFIED, rec::DRIVER_UNSPECIFIED},
    {api::DRIVER_QEMU, rec::DRIVER_QEMU},
    {api::DRIVER_VZ, rec::DRIVER_VZ},
};
constexpr EnumRow<api::Runtime, rec::Runtime> kRuntimes[] = {
    {api::RUNTIME_UNSPECIFIED, rec::RUNTIME_UNSPECIFIED},
    {api::RUNTIME_CONTAINERD, rec::RUNTIME_CONTAINERD},
    {api::RUNTIME_DOCKER, rec::RUNTIME_DOCKER},
};
constexpr EnumRow<api::RestartPolicy, rec::RestartPolicy> kRestarts[] = {
    {api::RESTART_POLICY_UNSPECIFIED, rec::RESTART_POLICY_UNSPECIFIED},
    {api::RESTART_POLICY_NEVER, rec::RESTART_POLICY_NEVER},
    {api::RESTART_POLICY_ON_FAILURE, rec::RESTART_POLICY_ON_FAILURE},
};
constexpr EnumRow<api::MountType, rec::MountType> kMountTypes[] = {
    {api::MOUNT_TYPE_AUTO, rec::MOUNT_TYPE_AUTO},
    {api::MOUNT_TYPE_VIRTIOFS, rec::MOUNT_TYPE_VIRTIOFS},
    {api::MOUNT_TYPE_9P, rec::MOUNT_TYPE_9P},
};
constexpr EnumRow<api::Proto, rec::Proto> kProtos[] = {
    {api::PROTO_UNSPECIFIED, rec::PROTO_UNSPECIFIED},
    {api::PROTO_TCP, rec::PROTO_TCP},
    {api::PROTO_UDP, rec::PROTO_UDP},
};
constexpr EnumRow<api::OomScope, rec::OomScope> kOomScopes[] = {
    {api::OOM_SCOPE_UNSPECIFIED, rec::OOM_SCOPE_UNSPECIFIED},
    {api::OOM_SCOPE_CGROUP, rec::OOM_SCOPE_CGROUP},
    {api::OOM_SCOPE_MACHINE, rec::OOM_SCOPE_MACHINE},
};

// Both directions through one overload set, so each message below converts
// with one template for both ways.
rec::MachineState Map(api::MachineState v) { return ToRec(kStates, v); }
api::MachineState Map(rec::MachineState v) { return ToApi(kStates, v); }
rec::Accel Map(api::Accel v) { return ToRec(kAccels, v); }
api::Accel Map(rec::Accel v) { return ToApi(kAccels, v); }
rec::Driver Map(api::Driver v) { return ToRec(kDrivers, v); }
api::Driver Map(rec::Driver v) { return ToApi(kDrivers, v); }
rec::Runtime Map(api::Runtime v) { return ToRec(kRuntimes, v); }
api::Runtime Map(rec::Runtime v) { return ToApi(kRuntimes, v); }
rec::RestartPolicy Map(api::RestartPolicy v) { return ToRec(kRestarts, v); }
api::RestartPolicy Map(rec::RestartPolicy v) { return ToApi(kRestarts, v); }
rec::MountType Map(api::MountType v) { return ToRec(kMountTypes, v); }
api::MountType Map(rec::MountType v) { return ToApi(kMountTypes, v); }
rec::Proto Map(api::Proto v) { return ToRec(kProtos, v); }
api::Proto Map(rec::Proto v) { return ToApi(kProtos, v); }
rec::OomScope Map(api::OomScope v) { return ToRec(kOomScopes, v); }
api::OomScope Map(rec::OomScope v) { return ToApi(kOomScopes, v); }

// The fields both sides name alike. Where they part (foreign_binaries, the
// boot), ToRecord and FromRecord say so.
template <typename From, typename To>
void CopySpec(const From& in, To& out) {
  out.set_cpus(in.cpus());
  out.set_memory_bytes(in.memory_bytes());
  out.set_disk_bytes(in.disk_bytes());
  out.set_arch(in.arch());
  out.set_accel(Map(in.accel()));
  out.set_image(in.image());
  out.set_driver(Map(in.driver()));
  out.set_runtime(Map(in.runtime()));
  for (const auto& s : in.reverse_sockets()) {
    auto* o = out.add_reverse_sockets();
    o->set_name(s.name());
    o->set_host_path(s.host_path());
    o->set_guest_path(s.guest_path());
  }
  for (const auto& r : in.port_rules()) {
    auto* o = out.add_port_rules();
    o->set_guest_ip(r.guest_ip());
    o->set_guest_port_start(r.guest_port_start());
    o->set_guest_port_end(r.guest_port_end());
    o->set_host_ip(r.host_ip());
    o->set_host_port_start(r.host_port_start());
    o->set_proto(Map(r.proto()));
    o->set_ignore(r.ignore());
  }
  for (const auto& f : in.static_forwards()) {
    auto* o = out.add_static_forwards();
    o->set_proto(Map(f.proto()));
    o->set_host_ip(f.host_ip());
    o->set_host_port(f.host_port());
    o->set_guest_port(f.guest_port());
  }
  out.set_restart(Map(in.restart()));
  out.set_max_restarts(in.max_restarts());
  out.set_autostart(in.autostart());
  for (const auto& m : in.mounts()) {
    auto* o = out.add_mounts();
    o->set_host_path(m.host_path());
    o->set_guest_path(m.guest_path());
    o->set_read_only(m.read_only());
    o->set_type(Map(m.type()));
  }
  out.set_no_mounts(in.no_mounts());
}

template <typename From, typename To>
void CopyOomKill(const From& in, To& out) {
  if (in.has_time()) *out.mutable_time() = in.time();
  out.set_pid(in.pid());
  out.set_process(in.process());
  out.set_rss_bytes(in.rss_bytes());
  out.set_scope(Map(in.scope()));
  out.set_limit_bytes(in.limit_bytes());
  out.set_machine_memory_bytes(in.machine_memory_bytes());
  out.set_cgroup(in.cgroup());
  out.set_container_id(in.container_id());
  out.set_container_name(in.container_name());
  out.set_emulated_arch(in.emulated_arch());
  out.set_summary(in.summary());
  out.set_fix(in.fix());
  out.set_guest_uptime_ms(in.guest_uptime_ms());
  out.set_unlogged_count(in.unlogged_count());
}

template <typename From, typename To>
void CopyImage(const From& in, To& out) {
  out.set_name(in.name());
  out.set_path(in.path());
  out.set_rootfs_sha256(in.rootfs_sha256());
}

void CopyPaths(const cove::v1::MachinePaths& in, cove::store::v1::Paths& out) {
  out.set_serial_log(in.serial_log());
  out.set_qmp_socket(in.debug_qmp_socket());
  out.set_agent_socket(in.debug_agent_socket());
  out.set_disk(in.disk());
}

void CopyPaths(const cove::store::v1::Paths& in, cove::v1::MachinePaths& out) {
  out.set_serial_log(in.serial_log());
  out.set_debug_qmp_socket(in.qmp_socket());
  out.set_debug_agent_socket(in.agent_socket());
  out.set_disk(in.disk());
}

// Version 0 -> 1, on the JSON document. Version 0 is read by its own field
// names (cove.v1.Machine's when the record was made: the JSON cove wrote
// then), never through cove.v1's generated code, so cove.v1 can change shape
// and old files still read. Only what the record keeps is taken; the live
// parts version 0 also held (guest, services, sockets, ...) are dropped.
nlohmann::json MigrateV0(const nlohmann::json& v0) {
  nlohmann::json out = {{"format_version", 1}};
  auto take = [&v0](nlohmann::json& to, const char* to_key, const char* from_key) {
    if (auto it = v0.find(from_key); it != v0.end() && !it->is_null()) to[to_key] = *it;
  };
  for (const char* key :
       {"name", "dir", "created_at", "image", "paths", "state", "error", "restarts"}) {
    take(out, key, key);
  }
  nlohmann::json boot = nlohmann::json::object();
  take(boot, "pid", "pid");
  take(boot, "accel", "accel_in_use");
  take(boot, "accel_reason", "accel_reason");
  take(boot, "started_at", "started_at");
  take(boot, "oom_kills", "oom_kills");
  if (!boot.empty()) out["boot"] = std::move(boot);
  if (auto it = v0.find("spec"); it != v0.end() && it->is_object()) {
    nlohmann::json spec = *it;
    const auto no = spec.find("no_foreign_binaries");
    const bool none = no != spec.end() && no->is_boolean() && no->get<bool>();
    spec.erase("no_foreign_binaries");
    spec["foreign_binaries"] = !none;
    out["spec"] = std::move(spec);
  }
  return out;
}

}  // namespace

rec::MachineRecord ToRecord(const api::Machine& m) {
  rec::MachineRecord out;
  out.set_format_version(kMachineRecordVersion);
  out.set_name(m.name());
  out.set_dir(m.dir());
  if (m.has_created_at()) *out.mutable_created_at() = m.created_at();
  // Absent only in LoadAll's stand-in for a file it could not read.
  if (m.has_spec()) {
    CopySpec(m.spec(), *out.mutable_spec());
    out.mutable_spec()->set_foreign_binaries(!m.spec().has_foreign_binaries() ||
                                             m.spec().foreign_binaries());
  }
  if (m.has_image()) CopyImage(m.image(), *out.mutable_image());
  if (m.has_paths()) CopyPaths(m.paths(), *out.mutable_paths());
  out.set_state(Map(m.state()));
  out.set_error(m.error());
  out.set_restarts(m.restarts());
  const bool booted = m.pid() != 0 || m.accel_in_use() != api::ACCEL_UNSPECIFIED ||
                      !m.accel_reason().empty() || m.has_started_at() || m.oom_kills_size() > 0;
  if (booted) {
    rec::Boot* boot = out.mutable_boot();
    boot->set_pid(m.pid());
    boot->set_accel(Map(m.accel_in_use()));
    boot->set_accel_reason(m.accel_reason());
    if (m.has_started_at()) *boot->mutable_started_at() = m.started_at();
    for (const auto& k : m.oom_kills()) CopyOomKill(k, *boot->add_oom_kills());
  }
  return out;
}

api::Machine FromRecord(const rec::MachineRecord& r) {
  api::Machine out;
  out.set_name(r.name());
  out.set_dir(r.dir());
  if (r.has_created_at()) *out.mutable_created_at() = r.created_at();
  if (r.has_spec()) {
    CopySpec(r.spec(), *out.mutable_spec());
    out.mutable_spec()->set_foreign_binaries(r.spec().foreign_binaries());
  }
  if (r.has_image()) CopyImage(r.image(), *out.mutable_image());
  if (r.has_paths()) CopyPaths(r.paths(), *out.mutable_paths());
  out.set_state(Map(r.state()));
  out.set_error(r.error());
  out.set_restarts(r.restarts());
  const rec::Boot& boot = r.boot();
  out.set_pid(boot.pid());
  out.set_accel_in_use(Map(boot.accel()));
  out.set_accel_reason(boot.accel_reason());
  if (boot.has_started_at()) *out.mutable_started_at() = boot.started_at();
  for (const auto& k : boot.oom_kills()) CopyOomKill(k, *out.add_oom_kills());
  return out;
}

std::string RecordToJson(const rec::MachineRecord& record) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  // Printing a message cannot fail: all its strings are set through the
  // generated setters (UTF-8 is checked at parse).
  (void)google::protobuf::util::MessageToJsonString(record, &out, options);
  return out;
}

absl::StatusOr<ParsedRecord> ParseRecordJson(const std::string& json) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json);
  } catch (const nlohmann::json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 9: ..."
    const std::string what = e.what();
    const size_t start = what.find("] ");
    return absl::DataLossError(absl::StrCat(
        "it is not valid JSON (", start == std::string::npos ? what : what.substr(start + 2), ")"));
  }
  if (!doc.is_object()) return absl::DataLossError("it is not a JSON object");
  ParsedRecord parsed;
  if (auto v = doc.find("format_version"); v != doc.end()) {
    if (!v->is_number_unsigned()) {
      return absl::DataLossError("its format_version is not a whole number");
    }
    const uint64_t version = v->get<uint64_t>();
    if (version > kMachineRecordVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("it is format_version ", version, ", written by a newer cove (this coved ",
                       "reads up to ", kMachineRecordVersion, "); upgrade cove"));
    }
    parsed.file_version = static_cast<uint32_t>(version);
  }
  google::protobuf::util::JsonParseOptions options;
  std::string text = json;
  if (parsed.file_version == 0) {
    text = MigrateV0(doc).dump();
    // As version 0 was always read: fields its writer had since dropped
    // are ignored.
    options.ignore_unknown_fields = true;
  }
  auto st = google::protobuf::util::JsonStringToMessage(text, &parsed.record, options);
  if (!st.ok()) return absl::DataLossError(std::string(st.message()));
  if (parsed.record.name().empty()) return absl::DataLossError("no machine name in it");
  return parsed;
}

}  // namespace cove::daemon
