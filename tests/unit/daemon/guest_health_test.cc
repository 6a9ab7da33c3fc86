#include "daemon/machine/guest_health.h"

#include <catch2/catch.hpp>
#include <vector>

namespace cove::daemon {

TEST_CASE("a container's limit kill names it, its limit and the fix", "[daemon][health]") {
  cove::agent::v1::OomKill k;
  k.set_pid(812);
  k.set_comm("dd");
  k.set_rss_bytes(64ull << 20);
  k.set_cgroup_limit(true);
  k.set_limit_bytes(64ull << 20);
  k.set_mem_total_bytes(1ull << 30);
  k.set_container_id("0123456789abcdef");
  k.set_container_name("hog");
  cove::v1::OomKill d = DescribeOomKill(k, "dev", "x86_64");
  CHECK(d.scope() == cove::v1::OOM_SCOPE_CGROUP);
  CHECK(d.limit_bytes() == 64ull << 20);
  CHECK(d.summary().find("container hog hit its 64MiB limit") != std::string::npos);
  CHECK(d.fix().find("docker run -m") != std::string::npos);
}

TEST_CASE("a machine-wide kill says how to give the machine more", "[daemon][health]") {
  cove::agent::v1::OomKill k;
  k.set_pid(77);
  k.set_comm("tail");
  k.set_mem_total_bytes(1ull << 30);
  k.set_emulated_arch("aarch64");
  cove::v1::OomKill d = DescribeOomKill(k, "dev", "x86_64");
  CHECK(d.scope() == cove::v1::OOM_SCOPE_MACHINE);
  CHECK(d.summary().find("machine dev ran out of its 1GiB") != std::string::npos);
  CHECK(d.fix().find("cove stop dev && cove set dev --memory 2GiB") != std::string::npos);
  CHECK(d.fix().find("ran as arm64 under emulation") != std::string::npos);
  CHECK(d.fix().find("use an amd64 image") != std::string::npos);
}

TEST_CASE("kills are told once and sustained pressure is an event", "[daemon][health]") {
  cove::v1::Machine record;
  std::vector<cove::v1::EventKind> events;
  GuestHealth health("dev", record,
                     [&](cove::v1::EventKind kind, const std::string&, const cove::v1::OomKill*) {
                       events.push_back(kind);
                     });
  cove::agent::v1::Hello hello;
  hello.set_uptime_ms(10000);
  health.OnHello(hello, 0);
  cove::agent::v1::OomKill k;
  k.set_pid(5);
  k.set_uptime_ms(9000);
  health.OnOomKill(k, 0, 1'000'000);
  k.set_replay(true);
  health.OnOomKill(k, 100, 1'000'100);  // the same kill, replayed
  REQUIRE(record.oom_kills_size() == 1);
  CHECK(record.oom_kills(0).time().seconds() == 999);  // 1 s before the hello
  cove::agent::v1::Heartbeat beat;
  beat.set_psi(true);
  beat.set_psi_some_avg10_x100(3000);
  health.OnHeartbeat(beat, 0, 0);
  CHECK_FALSE(record.guest().memory_pressure());  // one beat is not sustained
  health.OnHeartbeat(beat, 0, 0);
  CHECK(record.guest().memory_pressure());
  beat.set_psi_some_avg10_x100(100);
  health.OnHeartbeat(beat, 0, 0);
  CHECK_FALSE(record.guest().memory_pressure());
  CHECK(events == std::vector<cove::v1::EventKind>{cove::v1::EVENT_KIND_OOM_KILL,
                                                   cove::v1::EVENT_KIND_MEMORY_PRESSURE,
                                                   cove::v1::EVENT_KIND_MEMORY_PRESSURE});
}

// A machine's health with every event it publishes kept, and `count`
// kills of "forked" (pids from 100) within `count` ms of the hello.
struct Burst {
  cove::v1::Machine record;
  std::vector<std::string> messages;
  std::vector<uint32_t> pids;  // the event's kill, 0 for none
  GuestHealth health{
      "dev", record,
      [this](cove::v1::EventKind, const std::string& message, const cove::v1::OomKill* kill) {
        messages.push_back(message);
        pids.push_back(kill != nullptr ? kill->pid() : 0);
      }};
  explicit Burst(int count) {
    cove::agent::v1::Hello hello;
    hello.set_uptime_ms(10000);
    health.OnHello(hello, 0);
    cove::agent::v1::OomKill k;
    k.set_comm("forked");
    for (int i = 0; i < count; ++i) {
      k.set_pid(100 + i);
      k.set_uptime_ms(9000 + i);
      health.OnOomKill(k, i, 1'000'000 + i);
    }
  }
};

TEST_CASE("a burst of kills is told in a bounded number of events", "[daemon][health]") {
  Burst b(50);  // 50 kills within 50 ms
  auto& messages = b.messages;
  auto& record = b.record;
  CHECK(messages.size() == GuestHealth::kMaxKillEventsPerWindow);
  CHECK(record.oom_kills_size() == GuestHealth::kMaxKills);  // the newest kept
  CHECK(record.oom_kills(GuestHealth::kMaxKills - 1).pid() == 149);
  // The next window tells the next kill, with the count of those untold.
  cove::agent::v1::OomKill k;
  k.set_comm("forked");
  k.set_pid(500);
  k.set_uptime_ms(20000);
  b.health.OnOomKill(k, GuestHealth::kKillWindowMs + 100, 1'010'000);
  REQUIRE(messages.size() == GuestHealth::kMaxKillEventsPerWindow + 1);
  CHECK(messages.back().find("and 40 more OOM kills") != std::string::npos);
}

TEST_CASE("kills a burst left untold are told after it, also when no kill follows",
          "[daemon][health]") {
  Burst b(15);
  auto& messages = b.messages;
  REQUIRE(messages.size() == GuestHealth::kMaxKillEventsPerWindow);
  cove::agent::v1::Heartbeat beat;
  // Within the window: nothing yet.
  b.health.OnHeartbeat(beat, GuestHealth::kKillWindowMs - 1000, 1'009'000);
  CHECK(messages.size() == GuestHealth::kMaxKillEventsPerWindow);
  // After it: one event with the count and the last kill.
  b.health.OnHeartbeat(beat, GuestHealth::kKillWindowMs + 100, 1'010'100);
  REQUIRE(messages.size() == GuestHealth::kMaxKillEventsPerWindow + 1);
  CHECK(messages.back().find("5 more OOM kills") != std::string::npos);
  CHECK(messages.back().find("cove inspect dev") != std::string::npos);
  CHECK(b.pids.back() == 114);
  // Told once.
  b.health.OnHeartbeat(beat, 3 * GuestHealth::kKillWindowMs, 1'030'000);
  CHECK(messages.size() == GuestHealth::kMaxKillEventsPerWindow + 1);
}

}  // namespace cove::daemon
