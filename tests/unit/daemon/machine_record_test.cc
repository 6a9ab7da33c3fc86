#include "daemon/store/machine_record.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

using cove::daemon::FromRecord;
using cove::daemon::ParseRecordJson;
using cove::daemon::RecordToJson;
using cove::daemon::ToRecord;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

namespace {

// cove.v1.Machine's fields that live for one boot of coved and are not
// stored. Every other field must survive ToRecord/FromRecord: a new API
// field fails the round trip below until the record keeps it or it is
// named here.
const std::set<std::string> kLiveFields = {
    "guest",  "sockets",  "services",        "forwards",
    "mounts", "emulated", "binfmt_handlers", "accel_verdicts",
};

// Sets every field of `m` (and of its messages, one element per repeated
// field) to a value that is not the default, so nothing is left out by
// chance. Enums take their last value.
void FillAll(Message* m) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); i++) {
    const FieldDescriptor* f = d->field(i);
    // Real oneofs are skipped; a proto3 `optional` field's synthetic one is not.
    if (f->real_containing_oneof() != nullptr) continue;
    const bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE:
        FillAll(rep ? r->AddMessage(m, f) : r->MutableMessage(m, f));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        rep ? r->AddString(m, f, f->name()) : r->SetString(m, f, f->name());
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        rep ? r->AddBool(m, f, true) : r->SetBool(m, f, true);
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        rep ? r->AddInt32(m, f, 7) : r->SetInt32(m, f, 7);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        rep ? r->AddInt64(m, f, 7) : r->SetInt64(m, f, 7);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        rep ? r->AddUInt32(m, f, 7) : r->SetUInt32(m, f, 7);
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        rep ? r->AddUInt64(m, f, 7) : r->SetUInt64(m, f, 7);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        rep ? r->AddDouble(m, f, 0.5) : r->SetDouble(m, f, 0.5);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        rep ? r->AddFloat(m, f, 0.5) : r->SetFloat(m, f, 0.5);
        break;
      case FieldDescriptor::CPPTYPE_ENUM: {
        const auto* e = f->enum_type();
        const auto* last = e->value(e->value_count() - 1);
        rep ? r->AddEnum(m, f, last) : r->SetEnum(m, f, last);
        break;
      }
    }
  }
}

std::string Differences(const Message& a, const Message& b) {
  google::protobuf::util::MessageDifferencer differ;
  std::string report;
  differ.ReportDifferencesToString(&report);
  differ.Compare(a, b);
  return report;
}

cove::v1::Machine RoundTrip(const cove::v1::Machine& m) {
  auto parsed = ParseRecordJson(RecordToJson(ToRecord(m)));
  REQUIRE(parsed.ok());
  CHECK(parsed->file_version == cove::daemon::kMachineRecordVersion);
  return FromRecord(parsed->record);
}

}  // namespace

TEST_CASE("every stored field of cove.v1.Machine survives the record", "[store]") {
  cove::v1::Machine m;
  FillAll(&m);
  for (const std::string& live : kLiveFields) {
    const auto* f = m.GetDescriptor()->FindFieldByName(live);
    REQUIRE(f != nullptr);
    m.GetReflection()->ClearField(&m, f);
  }
  const cove::v1::Machine back = RoundTrip(m);
  INFO(Differences(m, back));
  CHECK(google::protobuf::util::MessageDifferencer::Equals(m, back));
}

TEST_CASE("the record leaves out what is only live", "[store]") {
  cove::v1::Machine m;
  FillAll(&m);
  const cove::v1::Machine back = RoundTrip(m);
  for (const std::string& live : kLiveFields) {
    const auto* f = back.GetDescriptor()->FindFieldByName(live);
    INFO(live);
    CHECK((f->is_repeated() ? back.GetReflection()->FieldSize(back, f) == 0
                            : !back.GetReflection()->HasField(back, f)));
  }
}

TEST_CASE("a machine that never booted has no boot in its record", "[store]") {
  cove::v1::Machine m;
  m.set_name("dev");
  m.mutable_spec()->set_cpus(2);
  const auto record = ToRecord(m);
  CHECK_FALSE(record.has_boot());
  CHECK(record.spec().foreign_binaries());
  const auto back = FromRecord(record);
  CHECK(back.has_spec());
  CHECK(back.spec().foreign_binaries());
  CHECK_FALSE(back.has_image());
  CHECK_FALSE(back.has_created_at());
}

// Each enum value, both ways: a value added to either side without its row
// in the conversion tables shows up here.
template <typename Enum, typename Set, typename Get>
void CheckEnum(const google::protobuf::EnumDescriptor* d, Set set, Get get) {
  for (int i = 0; i < d->value_count(); i++) {
    INFO(d->full_name() << " " << d->value(i)->name());
    const auto value = static_cast<Enum>(d->value(i)->number());
    cove::v1::Machine m;
    m.set_name("dev");
    set(m, value);
    CHECK(get(RoundTrip(m)) == value);
  }
}

template <typename Enum, typename Set, typename Get>
void CheckRecordEnum(const google::protobuf::EnumDescriptor* d, Set set, Get get) {
  for (int i = 0; i < d->value_count(); i++) {
    INFO(d->full_name() << " " << d->value(i)->name());
    const auto value = static_cast<Enum>(d->value(i)->number());
    cove::store::v1::MachineRecord r;
    r.set_name("dev");
    set(r, value);
    CHECK(get(ToRecord(FromRecord(r))) == value);
  }
}

TEST_CASE("every enum value maps between the API and the record, both ways", "[store]") {
  namespace api = cove::v1;
  namespace rec = cove::store::v1;
  CheckEnum<api::MachineState>(
      api::MachineState_descriptor(), [](auto& m, auto v) { m.set_state(v); },
      [](const auto& m) { return m.state(); });
  CheckEnum<api::Accel>(
      api::Accel_descriptor(), [](auto& m, auto v) { m.mutable_spec()->set_accel(v); },
      [](const auto& m) { return m.spec().accel(); });
  CheckEnum<api::Accel>(
      api::Accel_descriptor(), [](auto& m, auto v) { m.set_accel_in_use(v); },
      [](const auto& m) { return m.accel_in_use(); });
  CheckEnum<api::Driver>(
      api::Driver_descriptor(), [](auto& m, auto v) { m.mutable_spec()->set_driver(v); },
      [](const auto& m) { return m.spec().driver(); });
  CheckEnum<api::Runtime>(
      api::Runtime_descriptor(), [](auto& m, auto v) { m.mutable_spec()->set_runtime(v); },
      [](const auto& m) { return m.spec().runtime(); });
  CheckEnum<api::RestartPolicy>(
      api::RestartPolicy_descriptor(), [](auto& m, auto v) { m.mutable_spec()->set_restart(v); },
      [](const auto& m) { return m.spec().restart(); });
  CheckEnum<api::MountType>(
      api::MountType_descriptor(),
      [](auto& m, auto v) { m.mutable_spec()->add_mounts()->set_type(v); },
      [](const auto& m) { return m.spec().mounts(0).type(); });
  CheckEnum<api::Proto>(
      api::Proto_descriptor(),
      [](auto& m, auto v) { m.mutable_spec()->add_port_rules()->set_proto(v); },
      [](const auto& m) { return m.spec().port_rules(0).proto(); });
  CheckEnum<api::Proto>(
      api::Proto_descriptor(),
      [](auto& m, auto v) { m.mutable_spec()->add_static_forwards()->set_proto(v); },
      [](const auto& m) { return m.spec().static_forwards(0).proto(); });
  CheckEnum<api::OomScope>(
      api::OomScope_descriptor(), [](auto& m, auto v) { m.add_oom_kills()->set_scope(v); },
      [](const auto& m) { return m.oom_kills(0).scope(); });

  CheckRecordEnum<rec::MachineState>(
      rec::MachineState_descriptor(), [](auto& r, auto v) { r.set_state(v); },
      [](const auto& r) { return r.state(); });
  CheckRecordEnum<rec::Accel>(
      rec::Accel_descriptor(), [](auto& r, auto v) { r.mutable_spec()->set_accel(v); },
      [](const auto& r) { return r.spec().accel(); });
  CheckRecordEnum<rec::Driver>(
      rec::Driver_descriptor(), [](auto& r, auto v) { r.mutable_spec()->set_driver(v); },
      [](const auto& r) { return r.spec().driver(); });
  CheckRecordEnum<rec::Runtime>(
      rec::Runtime_descriptor(), [](auto& r, auto v) { r.mutable_spec()->set_runtime(v); },
      [](const auto& r) { return r.spec().runtime(); });
  CheckRecordEnum<rec::RestartPolicy>(
      rec::RestartPolicy_descriptor(), [](auto& r, auto v) { r.mutable_spec()->set_restart(v); },
      [](const auto& r) { return r.spec().restart(); });
  CheckRecordEnum<rec::MountType>(
      rec::MountType_descriptor(),
      [](auto& r, auto v) { r.mutable_spec()->add_mounts()->set_type(v); },
      [](const auto& r) { return r.spec().mounts(0).type(); });
  CheckRecordEnum<rec::Proto>(
      rec::Proto_descriptor(),
      [](auto& r, auto v) { r.mutable_spec()->add_port_rules()->set_proto(v); },
      [](const auto& r) { return r.spec().port_rules(0).proto(); });
  CheckRecordEnum<rec::OomScope>(
      rec::OomScope_descriptor(),
      [](auto& r, auto v) { r.mutable_boot()->add_oom_kills()->set_scope(v); },
      [](const auto& r) { return r.boot().oom_kills(0).scope(); });
}

TEST_CASE("machine.json in format 1 is read strictly; a newer format is refused", "[store]") {
  cove::v1::Machine m;
  m.set_name("dev");
  m.mutable_spec()->set_cpus(2);
  const std::string json = RecordToJson(ToRecord(m));
  CHECK(json.find("\"format_version\": 1") != std::string::npos);
  // Defaults are printed too: the file says what it means without the schema.
  CHECK(json.find("\"foreign_binaries\": true") != std::string::npos);
  CHECK(json.find("\"autostart\": false") != std::string::npos);

  auto unknown = ParseRecordJson(R"({"format_version": 1, "name": "dev", "colour": "blue"})");
  CHECK(absl::IsDataLoss(unknown.status()));

  auto newer = ParseRecordJson(R"({"format_version": 2, "name": "dev", "whatever": {}})");
  CHECK(absl::IsFailedPrecondition(newer.status()));
  CHECK(newer.status().message().find("newer cove") != std::string::npos);
  CHECK(newer.status().message().find("upgrade cove") != std::string::npos);

  CHECK(absl::IsDataLoss(ParseRecordJson(R"({"format_version": "1", "name": "dev"})").status()));
  CHECK(absl::IsDataLoss(ParseRecordJson(R"({"format_version": 1})").status()));
  CHECK(absl::IsDataLoss(ParseRecordJson("[1, 2]").status()));
  CHECK(absl::IsDataLoss(ParseRecordJson("{\"name\": ").status()));
}

TEST_CASE("format 0 is migrated: boot fields gathered, foreign binaries inverted", "[store]") {
  // What an earlier coved wrote for a machine the on-failure policy was
  // restarting, with a field that coved no longer knows.
  auto parsed = ParseRecordJson(R"({
    "name": "dev", "state": "MACHINE_STATE_ERROR", "error": "qemu was killed",
    "restarts": 2, "pid": 0, "accel_in_use": "ACCEL_KVM", "accel_reason": "requested",
    "spec": {"cpus": 4, "restart": "RESTART_POLICY_ON_FAILURE", "max_restarts": 3,
             "no_foreign_binaries": true, "retired_field": 1},
    "guest": {"agent_version": "0.1.0"}, "services": [{"name": "containerd"}]
  })");
  REQUIRE(parsed.ok());
  CHECK(parsed->file_version == 0);
  const auto& r = parsed->record;
  CHECK(r.format_version() == 1);
  CHECK(r.state() == cove::store::v1::MACHINE_STATE_ERROR);
  CHECK(r.error() == "qemu was killed");
  CHECK(r.restarts() == 2);
  CHECK(r.boot().accel() == cove::store::v1::ACCEL_KVM);
  CHECK(r.boot().accel_reason() == "requested");
  CHECK(r.spec().cpus() == 4);
  CHECK(r.spec().restart() == cove::store::v1::RESTART_POLICY_ON_FAILURE);
  CHECK(r.spec().max_restarts() == 3);
  CHECK_FALSE(r.spec().foreign_binaries());

  auto plain = ParseRecordJson(R"({"name": "dev", "spec": {"cpus": 1}})");
  REQUIRE(plain.ok());
  CHECK(plain->record.spec().foreign_binaries());
  CHECK_FALSE(plain->record.has_boot());
}
