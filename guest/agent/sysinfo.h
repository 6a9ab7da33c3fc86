// What the agent reports about the guest: clocks, kernel, memory and load.
// The Parse* functions are pure so they can be tested on fixed text; the
// Read* functions read /proc and return zeros when a value is unknown.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace cove::agent {

// Milliseconds on `clock` (CLOCK_BOOTTIME: since the kernel booted, counting
// suspend; CLOCK_MONOTONIC: for timers; CLOCK_REALTIME: Unix time).
int64_t ClockMs(clockid_t clock);

struct KernelInfo {
  std::string release;  // uname -r
  std::string arch;     // uname -m
};
KernelInfo ReadKernelInfo();

struct MemInfo {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;
};
// Text in /proc/meminfo format ("MemTotal:  16314492 kB").
MemInfo ParseMemInfo(std::string_view text);
MemInfo ReadMemInfo();

// The 1-minute load average times 100, from text in /proc/loadavg format
// ("0.52 0.58 0.59 1/123 4567"); 0 when unparseable.
uint32_t ParseLoad1x100(std::string_view text);
uint32_t ReadLoad1x100();

}  // namespace cove::agent
