#include "daemon/api/unix_listener.h"

#if defined(__APPLE__)
#include <launch.h>
#endif

#include <fcntl.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace cove::daemon::api {
namespace {

bool PeerUid(int fd, uid_t* uid) {
#if defined(__linux__)
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  *uid = cred.uid;
  return true;
#else
  gid_t gid;
  return ::getpeereid(fd, uid, &gid) == 0;
#endif
}

#if defined(__linux__)
// systemd's socket activation, as sd_listen_fds(3) defines it: LISTEN_FDS
// sockets from fd 3, meant for the process LISTEN_PID. Read here rather than
// through libsystemd, whose shared objects (with gcrypt, lzma, zstd, lz4 and
// cap) cost the idle coved about 1 MiB resident (docs/benchmarks.md).
constexpr int kListenFdsStart = 3;

int ListenFds() {
  const char* pid_env = std::getenv("LISTEN_PID");
  const char* fds_env = std::getenv("LISTEN_FDS");
  int pid = 0, n = 0;
  const bool ours = pid_env != nullptr && fds_env != nullptr && absl::SimpleAtoi(pid_env, &pid) &&
                    pid == ::getpid() && absl::SimpleAtoi(fds_env, &n) && n > 0;
  // Not for children (qemu, virtiofsd), as sd_listen_fds(1) does.
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return ours ? n : 0;
}

// A listening unix stream socket bound to `path` (sd_is_socket_unix).
bool IsUnixListener(int fd, const std::string& path) {
  int type = 0, listening = 0;
  socklen_t len = sizeof(type);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof(listening);
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
    return false;
  }
  sockaddr_un addr{};
  len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
  return addr.sun_family == AF_UNIX &&
         std::strncmp(addr.sun_path, path.c_str(), sizeof(addr.sun_path)) == 0;
}
#endif

}  // namespace

UnixListener::~UnixListener() { Stop(); }

absl::StatusOr<bool> UnixListener::TakeActivated() {
  int fd = -1;
#if defined(__linux__)
  const int n = ListenFds();
  if (n <= 0) return false;
  for (int i = 0; i < n; ++i) {
    if (IsUnixListener(kListenFdsStart + i, path_)) {
      fd = kListenFdsStart + i;
    } else {
      ::close(kListenFdsStart + i);  // not ours; do not leak it into qemu
    }
  }
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "systemd passed ", n, " socket(s) but none listens at ", path_,
        "; set ListenStream=", path_, " in coved.socket (`cove daemon install` writes it)"));
  }
#elif defined(__APPLE__)
  int* fds = nullptr;
  size_t count = 0;
  if (launch_activate_socket("Listeners", &fds, &count) != 0 || count == 0) return false;
  fd = fds[0];
  for (size_t i = 1; i < count; ++i) ::close(fds[i]);
  std::free(fds);
#else
  return false;
#endif
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  fd_ = fd;
  activated_ = true;
  if (::pipe2(wake_, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  return true;
}

absl::Status UnixListener::Listen() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", path_));
  }
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  ::unlink(path_.c_str());  // stale: we hold the home's lock, so no coved owns it
  // The home is 0700, so nobody else can reach the socket between bind and
  // chmod (a umask here would be process-wide and race other threads).
  int rc = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (rc == 0) rc = ::chmod(path_.c_str(), 0600);
  if (rc != 0 || ::listen(fd_, 128) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot listen on ", path_, ": ", std::strerror(errno)));
  }
  if (::pipe2(wake_, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  return absl::OkStatus();
}

void UnixListener::Serve(grpc::Server* server) {
  thread_ = std::thread([this, server]() { AcceptLoop(server); });
}

void UnixListener::AcceptLoop(grpc::Server* server) {
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("listener poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: the pending connection stays readable, so
        // back off instead of spinning.
        spdlog::warn("accept: {}; retrying in 100 ms", std::strerror(errno));
        ::poll(nullptr, 0, 100);
      } else if (errno != EINTR && errno != EAGAIN) {
        spdlog::warn("accept: {}", std::strerror(errno));
      }
      continue;
    }
    uid_t uid = static_cast<uid_t>(-1);
    if (!PeerUid(conn, &uid)) {
      spdlog::warn("cannot read the peer's credentials; closing the connection");
      ::close(conn);
      continue;
    }
    auth_.Record(conn, uid);
    if (uid != ::getuid()) spdlog::warn("connection from uid {} will be refused", uid);
    // gRPC takes ownership of the fd.
    grpc::AddInsecureChannelFromFd(server, conn);
  }
}

void UnixListener::Stop() {
  if (wake_[1] >= 0) {
    (void)!::write(wake_[1], "x", 1);
  }
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    if (!activated_) ::unlink(path_.c_str());
  }
  for (int& w : wake_) {
    if (w >= 0) ::close(w);
    w = -1;
  }
}

}  // namespace cove::daemon::api
