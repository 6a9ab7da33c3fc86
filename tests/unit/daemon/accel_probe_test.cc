#include "daemon/driver/qemu/accel_probe.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "test_util.h"

using namespace cove::daemon;
using namespace cove::daemon::qemu;

TEST_CASE("the probe program runs under tcg and a verdict is cached", "[accel]") {
  cove::testing::TempDir tmp;
  const std::string cache = tmp.path() + "/accel.json";
  auto report = ProbeAccelerators("qemu-system-x86_64", "x86_64", cache, tmp.path());
  REQUIRE(report.ok());
  REQUIRE(report->verdicts.size() == 2);
  const AccelVerdict& tcg = report->verdicts.back();
  CHECK(tcg.accel == cove::v1::ACCEL_TCG);
  INFO(tcg.reason);
  CHECK(tcg.usable);  // a CPU really ran the multiboot program
  const AccelVerdict& hw = report->verdicts.front();
  // Whatever kvm's verdict on this host, auto follows it.
  CHECK(report->auto_accel == (hw.usable ? hw.accel : cove::v1::ACCEL_TCG));
  if (!hw.usable) CHECK_FALSE(hw.reason.empty());

  // Second time the verdict comes from the cache: mark it and see the mark.
  auto text = cove::ReadFile(cache);
  REQUIRE(text.ok());
  auto j = nlohmann::json::parse(*text);
  j["verdicts"][1]["reason"] = "from the cache";
  cove::testing::WriteText(cache, j.dump());
  auto again = ProbeAccelerators("qemu-system-x86_64", "x86_64", cache, tmp.path());
  REQUIRE(again.ok());
  CHECK(again->verdicts.back().reason == "from the cache");
}

TEST_CASE("a missing qemu says what to install", "[accel]") {
  cove::testing::TempDir tmp;
  auto report = ProbeAccelerators("qemu-system-nonexistent", "x86_64", "", tmp.path());
  REQUIRE_FALSE(report.ok());
  CHECK(std::string(report.status().message()).find("apt-get install") != std::string::npos);
}

TEST_CASE("a real boot's failure overrules the probe and is cached", "[accel]") {
  cove::testing::TempDir tmp;
  const std::string cache = tmp.path() + "/accel.json";
  AccelReport report;
  report.key = "qemu|7.2|kernel|x86_64";
  report.verdicts = {{cove::v1::ACCEL_KVM, true, "", "host", "probe", 1},
                     {cove::v1::ACCEL_TCG, true, "", "", "probe", 1}};
  report.auto_accel = cove::v1::ACCEL_KVM;

  report.RecordBootFailure(cove::v1::ACCEL_KVM, "no sign of life");
  CHECK(report.auto_accel == cove::v1::ACCEL_TCG);
  const AccelVerdict* kvm = report.Find(cove::v1::ACCEL_KVM);
  REQUIRE(kvm != nullptr);
  CHECK_FALSE(kvm->usable);
  CHECK(kvm->reason == "no sign of life");
  CHECK(kvm->checked_by == "boot");
  CHECK(kvm->checked_at_unix > 1);
  CHECK(report.Find(cove::v1::ACCEL_HVF) == nullptr);

  REQUIRE(SaveAccelReport(report, cache).ok());
  auto text = cove::ReadFile(cache);
  REQUIRE(text.ok());
  auto j = nlohmann::json::parse(*text);
  CHECK(j["key"] == report.key);
  CHECK(j["auto"] == cove::v1::ACCEL_TCG);
  CHECK(j["verdicts"][0]["checked_by"] == "boot");
  CHECK(j["verdicts"][0]["usable"] == false);
  CHECK(j["verdicts"][0]["cpu"] == "host");

  auto proto = ToProto(*kvm);
  CHECK(proto.checked_by() == "boot");
  CHECK(proto.reason() == "no sign of life");
  CHECK(proto.checked_at().seconds() == kvm->checked_at_unix);
}

TEST_CASE("a reprobe ignores the cached verdicts", "[accel]") {
  cove::testing::TempDir tmp;
  const std::string cache = tmp.path() + "/accel.json";
  auto first = ProbeAccelerators("qemu-system-x86_64", "x86_64", cache, tmp.path());
  REQUIRE(first.ok());
  first->RecordBootFailure(cove::v1::ACCEL_TCG, "marked by the test");
  REQUIRE(SaveAccelReport(*first, cache).ok());
  auto cached = ProbeAccelerators("qemu-system-x86_64", "x86_64", cache, tmp.path());
  REQUIRE(cached.ok());
  CHECK(cached->Find(cove::v1::ACCEL_TCG)->reason == "marked by the test");
  auto fresh = ProbeAccelerators("qemu-system-x86_64", "x86_64", cache, tmp.path(), true);
  REQUIRE(fresh.ok());
  CHECK(fresh->Find(cove::v1::ACCEL_TCG)->usable);
  CHECK(fresh->Find(cove::v1::ACCEL_TCG)->checked_by == "probe");
}
