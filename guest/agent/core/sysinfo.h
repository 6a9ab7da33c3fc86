// What the agent reports about the guest: clocks, kernel, memory and load.
// The Parse* functions are pure so they can be tested on fixed text; the
// Read* functions read /proc and return zeros when a value is unknown.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace cove::agent {

// The text of a small file (/proc, /etc), at most 64 KiB; "" when it cannot
// be read.
std::string ReadSmallFile(const char* path);

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

// Memory pressure, from text in /proc/pressure/memory format
// ("some avg10=1.53 avg60=..."): avg10 of "some" and "full" times 100.
struct Pressure {
  bool available = false;  // false: no PSI (kernel without it, or psi=0)
  uint32_t some_avg10_x100 = 0;
  uint32_t full_avg10_x100 = 0;
};
Pressure ParsePressure(std::string_view text);
Pressure ReadMemoryPressure();

struct DiskUse {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // available to unprivileged users
};
DiskUse ReadDiskUse(const char* path = "/");

// Writes /proc/self/oom_score_adj (-1000 never killed .. 1000 killed first);
// children inherit it. Returns false with errno set when it cannot.
bool SetOomScoreAdj(int value);

}  // namespace cove::agent
