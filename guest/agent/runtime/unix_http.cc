#include "guest/agent/runtime/unix_http.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {

UniqueFd UnixConnect(const std::string& socket_path, int timeout_ms) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) return UniqueFd();
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return UniqueFd();
  return fd;
}

std::optional<std::string> UnixHttpGet(const std::string& socket_path, const std::string& http_path,
                                       int timeout_ms, size_t max_bytes) {
  const int64_t deadline_ms = ClockMs(CLOCK_MONOTONIC) + timeout_ms;
  UniqueFd fd = UnixConnect(socket_path, timeout_ms);
  if (!fd.valid()) return std::nullopt;
  const std::string request = "GET " + http_path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd.get(), request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    return std::nullopt;
  }
  // The timeout is for the whole answer: a server that trickles it out
  // cannot hold the caller for a timeout per read.
  std::string response;
  char buf[4096];
  while (response.size() < max_bytes) {
    const int64_t left_ms = deadline_ms - ClockMs(CLOCK_MONOTONIC);
    if (left_ms <= 0) break;
    pollfd pfd{fd.get(), POLLIN, 0};
    const int ready = poll(&pfd, 1, static_cast<int>(left_ms));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    ssize_t n = read(fd.get(), buf, std::min(sizeof(buf), max_bytes - response.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the end (HTTP/1.0 closes)
    response.append(buf, static_cast<size_t>(n));
  }
  if (response.empty()) return std::nullopt;
  return response;
}

int HttpStatus(const std::string& response) {
  if (response.size() < 12 || response.compare(0, 7, "HTTP/1.") != 0 || response[8] != ' ')
    return 0;
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (response[i] < '0' || response[i] > '9') return 0;
    code = code * 10 + (response[i] - '0');
  }
  return code;
}

}  // namespace cove::agent
