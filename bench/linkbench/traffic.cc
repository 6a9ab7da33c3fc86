#include "bench/linkbench/traffic.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <latch>

#include "absl/strings/str_cat.h"

namespace cove::bench {
namespace {

constexpr size_t kIoSize = 256 * 1024;
// A socket that sees no progress for this long is given up on, so a broken
// relay fails the run instead of hanging it.
constexpr int kIdleTimeoutSec = 60;

// Bytes written by clients and the sink: a fixed pattern, not zeros, in case
// some layer ever special-cases zero pages.
const char* Pattern() {
  static const std::string pattern = [] {
    std::string p(kIoSize, '\0');
    for (size_t i = 0; i < p.size(); i++) p[i] = static_cast<char>(i * 131 + 7);
    return p;
  }();
  return pattern.data();
}

void SetIdleTimeout(int fd) {
  timeval tv{kIdleTimeoutSec, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool WriteAll(int fd, uint64_t bytes) {
  while (bytes > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes, kIoSize));
    const ssize_t w = write(fd, Pattern(), n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    bytes -= static_cast<uint64_t>(w);
  }
  return true;
}

// Reads to EOF; returns the byte count, or -1 on an error or timeout.
int64_t ReadAll(int fd) {
  static thread_local std::string buf(kIoSize, '\0');
  int64_t total = 0;
  while (true) {
    const ssize_t r = read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return total;
    total += r;
  }
}

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Listens on 127.0.0.1 at a port the kernel picks; sets `endpoint`.
absl::StatusOr<int> ListenTcp(std::string& endpoint) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback(0);
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::InternalError(absl::StrCat("listen on tcp: ", std::strerror(err)));
  }
  endpoint = absl::StrCat("tcp:", ntohs(a.sin_port));
  return fd;
}

absl::StatusOr<int> Listen(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return absl::InvalidArgumentError("path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  unlink(path.c_str());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 64) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::InternalError(absl::StrCat("listen on ", path, ": ", std::strerror(err)));
  }
  return fd;
}

}  // namespace

int TcpPortOf(const std::string& endpoint) {
  return endpoint.rfind("tcp:", 0) == 0 ? std::atoi(endpoint.c_str() + 4) : 0;
}

int FreeTcpPort() {
  std::string endpoint;
  absl::StatusOr<int> fd = ListenTcp(endpoint);
  if (!fd.ok()) return 0;
  close(*fd);
  return TcpPortOf(endpoint);
}

absl::StatusOr<int> ConnectUnix(const std::string& path, Clock::duration timeout) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (const int port = TcpPortOf(path); port != 0) {
    *reinterpret_cast<sockaddr_in*>(&addr) = Loopback(port);
    len = sizeof(sockaddr_in);
  } else {
    auto* un = reinterpret_cast<sockaddr_un*>(&addr);
    un->sun_family = AF_UNIX;
    if (path.size() >= sizeof(un->sun_path)) return absl::InvalidArgumentError("path too long");
    std::memcpy(un->sun_path, path.c_str(), path.size() + 1);
    len = sizeof(sockaddr_un);
  }
  const Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0) {
      SetIdleTimeout(fd);
      return fd;
    }
    const int err = errno;
    close(fd);
    if (Clock::now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("connect ", path, ": ", std::strerror(err)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::StatusOr<std::unique_ptr<Sink>> Sink::Start(const std::string& dir, bool tcp) {
  std::unique_ptr<Sink> sink(new Sink);
  sink->in_path_ = dir + "/sink-in.sock";
  sink->out_path_ = dir + "/sink-out.sock";
  absl::StatusOr<int> in = tcp ? ListenTcp(sink->in_path_) : Listen(sink->in_path_);
  if (!in.ok()) return in.status();
  sink->in_fd_ = *in;
  absl::StatusOr<int> out = tcp ? ListenTcp(sink->out_path_) : Listen(sink->out_path_);
  if (!out.ok()) return out.status();
  sink->out_fd_ = *out;
  if (pipe2(sink->wake_pipe_, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  Sink* s = sink.get();
  s->acceptors_.emplace_back([s]() { s->AcceptLoop(s->in_fd_, false); });
  s->acceptors_.emplace_back([s]() { s->AcceptLoop(s->out_fd_, true); });
  return sink;
}

Sink::~Sink() {
  if (wake_pipe_[1] >= 0) (void)!write(wake_pipe_[1], "x", 1);
  for (std::thread& t : acceptors_) t.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  // Each ends at its connection's EOF or idle timeout.
  for (std::thread& t : workers) t.join();
  for (int fd : {in_fd_, out_fd_, wake_pipe_[0], wake_pipe_[1]}) {
    if (fd >= 0) close(fd);
  }
  unlink(in_path_.c_str());
  unlink(out_path_.c_str());
}

void Sink::AcceptLoop(int listen_fd, bool send) {
  while (true) {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    SetIdleTimeout(fd);
    std::lock_guard<std::mutex> lock(mu_);
    workers_.emplace_back([this, fd, send]() { send ? Send(fd) : Receive(fd); });
  }
}

void Sink::Receive(int fd) {
  const int64_t n = ReadAll(fd);
  const Clock::time_point now = Clock::now();
  close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  done_conns_++;
  if (n > 0) done_bytes_ += static_cast<uint64_t>(n);
  last_done_ = std::max(last_done_, now);
  cv_.notify_all();
}

void Sink::Send(int fd) {
  if (WriteAll(fd, send_bytes_.load())) {
    shutdown(fd, SHUT_WR);
    ReadAll(fd);  // until the client closes, so no byte is cut off by a reset
  }
  close(fd);
}

void Sink::BeginTrial(uint64_t bytes_per_conn) {
  send_bytes_ = bytes_per_conn;
  std::lock_guard<std::mutex> lock(mu_);
  done_conns_ = 0;
  done_bytes_ = 0;
  last_done_ = Clock::time_point{};
}

absl::StatusOr<std::pair<uint64_t, Clock::time_point>> Sink::AwaitUploads(size_t conns,
                                                                          Clock::duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return done_conns_ >= conns; })) {
    return absl::DeadlineExceededError(absl::StrCat("the sink saw ", done_conns_, " of ", conns,
                                                    " connections end (", done_bytes_,
                                                    " bytes) before the timeout"));
  }
  return std::make_pair(done_bytes_, last_done_);
}

absl::StatusOr<TrialResult> RunTrial(Sink& sink, const std::string& relay_path, Direction direction,
                                     size_t streams, uint64_t bytes_per_stream,
                                     Clock::duration timeout) {
  sink.BeginTrial(bytes_per_stream);
  struct ClientEnd {
    std::string error;
    uint64_t received = 0;
    Clock::time_point done{};
  };
  std::vector<ClientEnd> ends(streams);
  std::latch go(1);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < streams; i++) {
    clients.emplace_back([&, i]() {
      go.wait();
      ClientEnd& end = ends[i];
      // Connecting is part of the timed trial: through a relay, the far end
      // may start sending as soon as the relay connected to it.
      absl::StatusOr<int> fd = ConnectUnix(relay_path, std::chrono::seconds(5));
      if (!fd.ok()) {
        end.error = fd.status().ToString();
        return;
      }
      if (direction == Direction::kUpload) {
        if (!WriteAll(*fd, bytes_per_stream)) end.error = std::strerror(errno);
        shutdown(*fd, SHUT_WR);
        ReadAll(*fd);
      } else {
        const int64_t n = ReadAll(*fd);
        end.done = Clock::now();
        if (n < 0) end.error = std::strerror(errno);
        end.received = n > 0 ? static_cast<uint64_t>(n) : 0;
      }
      close(*fd);
    });
  }
  const Clock::time_point start = Clock::now();
  go.count_down();
  TrialResult result;
  absl::Status status;
  if (direction == Direction::kUpload) {
    auto done = sink.AwaitUploads(streams, timeout);
    if (done.ok()) {
      result.bytes = done->first;
      result.seconds = std::chrono::duration<double>(done->second - start).count();
    } else {
      status = done.status();
    }
  }
  for (std::thread& t : clients) t.join();
  if (direction == Direction::kDownload) {
    Clock::time_point last = start;
    for (const ClientEnd& end : ends) {
      result.bytes += end.received;
      last = std::max(last, end.done);
    }
    result.seconds = std::chrono::duration<double>(last - start).count();
  }
  for (const ClientEnd& end : ends) {
    if (!end.error.empty() && status.ok()) status = absl::InternalError("client: " + end.error);
  }
  if (!status.ok()) return status;
  if (result.bytes != bytes_per_stream * streams) {
    return absl::DataLossError(
        absl::StrCat("moved ", result.bytes, " bytes, expected ", bytes_per_stream * streams));
  }
  return result;
}

}  // namespace cove::bench
