#include "daemon/driver/qemu/accel_probe.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "test_util.h"

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
