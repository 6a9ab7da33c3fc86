#include "guest/agent/core/sysinfo.h"

#include <catch2/catch.hpp>

namespace cove::agent {

TEST_CASE("meminfo is parsed into bytes", "[agent][sysinfo]") {
  const char* text =
      "MemTotal:        2030592 kB\n"
      "MemFree:          103456 kB\n"
      "MemAvailable:    1534208 kB\n"
      "Buffers:           12345 kB\n";
  MemInfo info = ParseMemInfo(text);
  CHECK(info.total_bytes == 2030592ull * 1024);
  CHECK(info.available_bytes == 1534208ull * 1024);
}

TEST_CASE("missing meminfo fields are 0", "[agent][sysinfo]") {
  // Kernels before 3.14 have no MemAvailable; MemTotalX must not match.
  MemInfo info = ParseMemInfo("MemTotalX: 5 kB\nMemTotal: 7 kB");
  CHECK(info.total_bytes == 7 * 1024);
  CHECK(info.available_bytes == 0);
  CHECK(ParseMemInfo("").total_bytes == 0);
  CHECK(ParseMemInfo("MemTotal: kB\n").total_bytes == 0);
}

TEST_CASE("loadavg gives load1 times 100", "[agent][sysinfo]") {
  CHECK(ParseLoad1x100("0.52 0.58 0.59 1/123 4567\n") == 52);
  CHECK(ParseLoad1x100("12.05 1.00 1.00 1/1 1") == 1205);
  CHECK(ParseLoad1x100("3 1 1") == 300);
  CHECK(ParseLoad1x100("1.5 1 1") == 150);
  CHECK(ParseLoad1x100("") == 0);
  CHECK(ParseLoad1x100("x") == 0);
}

TEST_CASE("this machine's figures are plausible", "[agent][sysinfo]") {
  MemInfo mem = ReadMemInfo();
  CHECK(mem.total_bytes > 0);
  CHECK(mem.available_bytes <= mem.total_bytes);
  KernelInfo kernel = ReadKernelInfo();
  CHECK_FALSE(kernel.release.empty());
  CHECK_FALSE(kernel.arch.empty());
  CHECK(ClockMs(CLOCK_BOOTTIME) > 0);
}

}  // namespace cove::agent
