#include "guest/agent/core/log.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace cove::agent {

void Log(const char* format, ...) {
  // Seconds since boot, like the kernel log, so agent lines line up with dmesg.
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  char line[1024];
  // Leaves room for the newline; longer messages are cut.
  constexpr size_t kRoom = sizeof(line) - 1;
  int n = std::snprintf(line, kRoom, "cove-agent: [%5ld.%03ld] ", static_cast<long>(ts.tv_sec),
                        ts.tv_nsec / 1000000);
  va_list args;
  va_start(args, format);
  int m = std::vsnprintf(line + n, kRoom - static_cast<size_t>(n), format, args);
  va_end(args);
  size_t length = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (length > kRoom - 1) length = kRoom - 1;
  line[length++] = '\n';
  // One write per line (stderr is unbuffered) so lines never interleave.
  std::fwrite(line, 1, length, stderr);
}

}  // namespace cove::agent
