#include "guest/agent/core/sysinfo.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace cove::agent {
namespace {

// /proc files here are a few KiB; the bound keeps a surprise from growing.
constexpr size_t kMaxProcFile = size_t{64} * 1024;

}  // namespace

std::string ReadSmallFile(const char* path) {
  std::string text;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[4096];
  while (text.size() < kMaxProcFile) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The lines of `text`, without their newlines.
std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    lines.push_back(text.substr(pos, eol - pos));
    pos = eol + 1;
  }
  return lines;
}

// Value of the line "<key>: <number> [kB]" in bytes; 0 when absent.
uint64_t MemInfoField(std::string_view text, std::string_view key) {
  for (std::string_view line : Lines(text)) {
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != ':') continue;
    size_t i = key.size() + 1;
    while (i < line.size() && line[i] == ' ') ++i;
    uint64_t value = 0;
    bool any = false;
    while (i < line.size() && IsDigit(line[i])) {
      value = value * 10 + static_cast<uint64_t>(line[i++] - '0');
      any = true;
    }
    if (!any) return 0;
    return line.substr(i).find("kB") != std::string_view::npos ? value * 1024 : value;
  }
  return 0;
}

// "12.34" at the start of `text` times 100; false when it starts with no digit.
bool ParseHundredths(std::string_view text, uint32_t* out) {
  // Parsed by hand: strtod would depend on the locale.
  size_t i = 0;
  uint64_t whole = 0;
  bool any = false;
  while (i < text.size() && IsDigit(text[i]) && whole < 100000000) {
    whole = whole * 10 + static_cast<uint64_t>(text[i++] - '0');
    any = true;
  }
  if (!any) return false;
  uint32_t hundredths = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    for (int digit = 0; digit < 2; ++digit) {
      hundredths *= 10;
      if (i < text.size() && IsDigit(text[i])) hundredths += static_cast<uint32_t>(text[i++] - '0');
    }
  }
  *out = static_cast<uint32_t>(whole * 100 + hundredths);
  return true;
}

}  // namespace

int64_t ClockMs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

KernelInfo ReadKernelInfo() {
  KernelInfo info;
  utsname u{};
  if (uname(&u) == 0) {
    info.release = u.release;
    info.arch = u.machine;
  }
  return info;
}

MemInfo ParseMemInfo(std::string_view text) {
  MemInfo info;
  info.total_bytes = MemInfoField(text, "MemTotal");
  info.available_bytes = MemInfoField(text, "MemAvailable");
  return info;
}

MemInfo ReadMemInfo() { return ParseMemInfo(ReadSmallFile("/proc/meminfo")); }

uint32_t ParseLoad1x100(std::string_view text) {
  uint32_t value = 0;
  return ParseHundredths(text, &value) ? value : 0;
}

uint32_t ReadLoad1x100() { return ParseLoad1x100(ReadSmallFile("/proc/loadavg")); }

Pressure ParsePressure(std::string_view text) {
  Pressure p;
  for (std::string_view line : Lines(text)) {
    const bool some = line.starts_with("some ");
    if (!some && !line.starts_with("full ")) continue;
    size_t at = line.find("avg10=");
    uint32_t value = 0;
    if (at == std::string_view::npos || !ParseHundredths(line.substr(at + 6), &value)) continue;
    p.available = true;
    (some ? p.some_avg10_x100 : p.full_avg10_x100) = value;
  }
  return p;
}

Pressure ReadMemoryPressure() { return ParsePressure(ReadSmallFile("/proc/pressure/memory")); }

DiskUse ReadDiskUse(const char* path) {
  DiskUse use;
  struct statvfs st {};
  if (statvfs(path, &st) != 0) return use;
  use.total_bytes = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  use.free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  return use;
}

bool SetOomScoreAdj(int value) {
  int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const std::string text = std::to_string(value);
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int saved = errno;
  close(fd);
  errno = saved;
  return ok;
}

}  // namespace cove::agent
