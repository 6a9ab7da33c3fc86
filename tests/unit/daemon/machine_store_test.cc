#include "daemon/store/machine_store.h"

#include <catch2/catch.hpp>
#include <filesystem>

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
