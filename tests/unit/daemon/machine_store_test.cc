#include "daemon/store/machine_store.h"

#include <google/protobuf/util/time_util.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "test_util.h"

using cove::daemon::MachineStore;
using cove::testing::TempDir;
using cove::testing::WriteText;

TEST_CASE("machine.json round-trips every field", "[store]") {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  std::filesystem::create_directories(layout.machine_dir("dev"));
  MachineStore store(layout);
  cove::v1::Machine m;
  m.set_name("dev");
  m.set_state(cove::v1::MACHINE_STATE_RUNNING);
  m.mutable_spec()->set_cpus(3);
  m.mutable_spec()->set_memory_bytes(3ull << 30);
  m.mutable_spec()->set_arch("x86_64");
  m.mutable_spec()->set_foreign_binaries(true);  // filled in by NormalizeSpec, as in every spec
  m.set_pid(1234);
  m.set_accel_in_use(cove::v1::ACCEL_TCG);
  m.mutable_image()->set_rootfs_sha256("abc");
  REQUIRE(store.Save(m).ok());
  auto back = store.Load("dev");
  REQUIRE(back.ok());
  CHECK(back->SerializeAsString() == m.SerializeAsString());
  // No temporary file is left behind.
  for (const auto& e : std::filesystem::directory_iterator(layout.machine_dir("dev"))) {
    CHECK(e.path().filename() == "machine.json");
  }
}

TEST_CASE("a corrupt machine.json is listed in error and the others still load", "[store]") {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  MachineStore store(layout);
  for (const char* name : {"good", "bad", "empty"}) {
    std::filesystem::create_directories(layout.machine_dir(name));
  }
  cove::v1::Machine good;
  good.set_name("good");
  good.set_state(cove::v1::MACHINE_STATE_STOPPED);
  REQUIRE(store.Save(good).ok());
  WriteText(store.json_path("bad"), "{\"name\": \"bad\", \"state\": ");
  // "empty" has no machine.json at all. A staging leftover is removed.
  std::filesystem::create_directories(layout.machines() + "/.creating-half");

  auto all = store.LoadAll();
  REQUIRE(all.size() == 3);
  std::map<std::string, cove::v1::Machine> by_name;
  for (auto& m : all) by_name[m.name()] = m;
  CHECK(by_name["good"].state() == cove::v1::MACHINE_STATE_STOPPED);
  CHECK(by_name["bad"].state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK(by_name["bad"].error().find("machine.json is unreadable") != std::string::npos);
  CHECK(by_name["empty"].state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK_FALSE(std::filesystem::exists(layout.machines() + "/.creating-half"));
}

TEST_CASE("a machine.json naming another machine is rejected", "[store]") {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  MachineStore store(layout);
  std::filesystem::create_directories(layout.machine_dir("a"));
  WriteText(store.json_path("a"), R"({"name": "b"})");
  CHECK(absl::IsDataLoss(store.Load("a").status()));
}

namespace {

// machine.json files that coved wrote before the record had a format_version
// (format 0: cove.v1.Machine's JSON), made for real with cove at 38239f7:
//   machine-v0-created.json  `cove create t2` with every spec flag set
//   machine-v0-running.json  t1 running under tcg after two OOM kills, one
//                            machine-wide and one of a cgroup's limit
std::string Fixture(const std::string& name) {
  auto text = cove::ReadFile(std::string(COVE_TESTDATA_DIR) + "/" + name);
  REQUIRE(text.ok());
  return *text;
}

// Puts a fixture where the store looks for machine `name`.
void Install(const cove::HomeLayout& layout, const std::string& name, const std::string& text) {
  std::filesystem::create_directories(layout.machine_dir(name));
  WriteText(layout.machine_dir(name) + "/machine.json", text);
}

}  // namespace

TEST_CASE("a format-0 machine.json of a created machine loads whole", "[store]") {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  MachineStore store(layout);
  Install(layout, "t2", Fixture("machine-v0-created.json"));
  auto m = store.Load("t2");
  REQUIRE(m.ok());
  CHECK(m->name() == "t2");
  CHECK(m->state() == cove::v1::MACHINE_STATE_STOPPED);
  CHECK(m->dir() == "/tmp/cove-fixture-home/machines/t2");
  CHECK(google::protobuf::util::TimeUtil::ToString(m->created_at()) == "2026-12-07T22:53:52Z");
  const std::string image =
      "/var/tmp/cove-test-images/7fa203974708c667f0a430ef2403f1a11ee74fa38606eb29faf8b520b5eb6e92";
  CHECK(m->image().name() == "debian-trixie-x86_64");
  CHECK(m->image().path() == image);
  CHECK(m->image().rootfs_sha256() ==
        "f11a7b9ed61d59efea0840a12dca41f78154fe6ce8e81d482c5b946193c3adb7");
  CHECK(m->paths().serial_log() == "/tmp/cove-fixture-home/machines/t2/serial.log");
  CHECK(m->paths().debug_qmp_socket() == "/tmp/cove-fixture-home/machines/t2/qmp.sock");
  CHECK(m->paths().debug_agent_socket() == "/tmp/cove-fixture-home/machines/t2/agent.sock");
  CHECK(m->paths().disk() == "/tmp/cove-fixture-home/machines/t2/disk.qcow2");
  CHECK(m->pid() == 0);
  CHECK(m->restarts() == 0);
  CHECK(m->error().empty());
  CHECK(m->accel_in_use() == cove::v1::ACCEL_UNSPECIFIED);
  CHECK_FALSE(m->has_started_at());

  const cove::v1::MachineSpec& s = m->spec();
  CHECK(s.cpus() == 1);
  CHECK(s.memory_bytes() == 1ull << 30);
  CHECK(s.disk_bytes() == 8ull << 30);
  CHECK(s.arch() == "x86_64");
  CHECK(s.accel() == cove::v1::ACCEL_TCG);
  CHECK(s.image() == image);
  CHECK(s.driver() == cove::v1::DRIVER_QEMU);
  CHECK(s.runtime() == cove::v1::RUNTIME_DOCKER);
  REQUIRE(s.reverse_sockets_size() == 1);
  CHECK(s.reverse_sockets(0).name() == "ssh");
  CHECK(s.reverse_sockets(0).host_path() == "/tmp/cove-fixture-share/agent.sock");
  CHECK(s.reverse_sockets(0).guest_path() == "/run/host-ssh.sock");
  REQUIRE(s.port_rules_size() == 2);
  CHECK(s.port_rules(0).guest_port_start() == 8080);
  CHECK(s.port_rules(0).guest_port_end() == 8080);
  CHECK(s.port_rules(0).host_port_start() == 18080);
  CHECK_FALSE(s.port_rules(0).ignore());
  CHECK(s.port_rules(1).guest_port_start() == 3000);
  CHECK(s.port_rules(1).guest_port_end() == 3999);
  CHECK(s.port_rules(1).ignore());
  REQUIRE(s.static_forwards_size() == 1);
  CHECK(s.static_forwards(0).proto() == cove::v1::PROTO_UDP);
  CHECK(s.static_forwards(0).host_ip() == "127.0.0.1");
  CHECK(s.static_forwards(0).host_port() == 18081);
  CHECK(s.static_forwards(0).guest_port() == 81);
  CHECK(s.restart() == cove::v1::RESTART_POLICY_ON_FAILURE);
  CHECK(s.max_restarts() == 5);
  CHECK(s.autostart());
  REQUIRE(s.mounts_size() == 1);
  CHECK(s.mounts(0).host_path() == "/tmp/cove-fixture-share");
  CHECK(s.mounts(0).guest_path() == "/share");
  CHECK(s.mounts(0).read_only());
  CHECK(s.mounts(0).type() == cove::v1::MOUNT_TYPE_9P);
  CHECK_FALSE(s.no_mounts());
  CHECK_FALSE(s.foreign_binaries());
}

TEST_CASE("a format-0 machine.json of a running machine keeps what re-adoption needs", "[store]") {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  MachineStore store(layout);
  Install(layout, "t1", Fixture("machine-v0-running.json"));
  auto m = store.Load("t1");
  REQUIRE(m.ok());
  CHECK(m->state() == cove::v1::MACHINE_STATE_RUNNING);
  CHECK(m->pid() == 22451);
  CHECK(m->accel_in_use() == cove::v1::ACCEL_TCG);
  CHECK(m->accel_reason().find("auto: kvm unusable here") == 0);
  CHECK(google::protobuf::util::TimeUtil::ToString(m->started_at()) == "2026-12-07T22:54:16Z");
  CHECK(m->spec().cpus() == 2);
  CHECK(m->spec().accel() == cove::v1::ACCEL_AUTO);
  CHECK(m->spec().runtime() == cove::v1::RUNTIME_CONTAINERD);
  CHECK(m->spec().restart() == cove::v1::RESTART_POLICY_NEVER);
  CHECK(m->spec().no_mounts());
  CHECK(m->spec().mounts().empty());
  CHECK(m->spec().foreign_binaries());
  CHECK(m->paths().debug_agent_socket() == "/tmp/cove-fixture-home/machines/t1/agent.sock");

  REQUIRE(m->oom_kills_size() == 2);
  const cove::v1::OomKill& all = m->oom_kills(0);
  CHECK(google::protobuf::util::TimeUtil::ToString(all.time()) == "2026-12-07T22:55:31Z");
  CHECK(all.pid() == 193);
  CHECK(all.process() == "tail");
  CHECK(all.rss_bytes() == 908570624);
  CHECK(all.scope() == cove::v1::OOM_SCOPE_MACHINE);
  CHECK(all.limit_bytes() == 1014059008);
  CHECK(all.machine_memory_bytes() == 1014059008);
  CHECK(all.cgroup() == "/");
  CHECK(all.summary().find("machine t1 ran out of its 967.1MiB") == 0);
  CHECK(all.fix() == "give it more: cove stop t1 && cove set t1 --memory 2GiB");
  CHECK(all.guest_uptime_ms() == 90219);
  const cove::v1::OomKill& hog = m->oom_kills(1);
  CHECK(hog.scope() == cove::v1::OOM_SCOPE_CGROUP);
  CHECK(hog.limit_bytes() == 64ull << 20);
  CHECK(hog.cgroup() == "/hog");
  CHECK(hog.guest_uptime_ms() == 105131);

  // What lived for that boot is not carried over.
  CHECK_FALSE(m->has_guest());
  CHECK_FALSE(m->has_sockets());
  CHECK(m->services().empty());
  CHECK(m->binfmt_handlers().empty());
}

TEST_CASE("coved's start rewrites a format-0 machine.json once, keeping the old one", "[store]") {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  MachineStore store(layout);
  const std::string v0 = Fixture("machine-v0-running.json");
  Install(layout, "t1", v0);
  const std::string path = store.json_path("t1");
  const auto before = store.Load("t1");
  REQUIRE(before.ok());

  auto all = store.LoadAll();
  REQUIRE(all.size() == 1);
  CHECK(all[0].SerializeAsString() == before->SerializeAsString());
  CHECK(*cove::ReadFile(path + ".v0") == v0);
  const std::string v1 = *cove::ReadFile(path);
  const auto json = nlohmann::json::parse(v1);
  CHECK(json["format_version"] == 1);
  CHECK(json["boot"]["pid"] == 22451);
  CHECK(json["spec"]["foreign_binaries"] == true);
  CHECK_FALSE(json["spec"].contains("no_foreign_binaries"));
  CHECK_FALSE(json.contains("guest"));
  CHECK_FALSE(json.contains("services"));
  // The new file reads back the same, and a second start leaves it be.
  const auto after = store.Load("t1");
  REQUIRE(after.ok());
  CHECK(after->SerializeAsString() == before->SerializeAsString());
  WriteText(path + ".v0", "kept");
  store.LoadAll();
  CHECK(*cove::ReadFile(path) == v1);
  CHECK(*cove::ReadFile(path + ".v0") == "kept");
}

TEST_CASE("a machine.json from a newer cove is refused and never overwritten", "[store]") {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  MachineStore store(layout);
  const std::string newer =
      R"({"format_version": 2, "name": "next", "spec": {"shape": "unknown to this coved"}})";
  Install(layout, "next", newer);
  CHECK(absl::IsFailedPrecondition(store.Load("next").status()));

  auto all = store.LoadAll();
  REQUIRE(all.size() == 1);
  const cove::v1::Machine& m = all[0];
  CHECK(m.state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK(m.error().find("written by a newer cove") != std::string::npos);
  CHECK(m.error().find("upgrade cove") != std::string::npos);
  // The stand-in cannot be saved over it (a stop persists the machine).
  CHECK(absl::IsFailedPrecondition(store.Save(m)));
  CHECK(*cove::ReadFile(store.json_path("next")) == newer);
  CHECK_FALSE(std::filesystem::exists(store.json_path("next") + ".v2"));
  CHECK_FALSE(std::filesystem::exists(store.json_path("next") + ".v0"));
}
