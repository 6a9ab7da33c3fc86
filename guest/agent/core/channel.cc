#include "guest/agent/core/channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

std::string ErrnoText(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// First line of a small sysfs attribute, without the newline.
std::string ReadAttribute(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  char buf[256];
  ssize_t n = read(fd.get(), buf, sizeof(buf));
  if (n <= 0) return {};
  std::string text(buf, static_cast<size_t>(n));
  if (auto eol = text.find('\n'); eol != std::string::npos) text.resize(eol);
  return text;
}

// Fills `addr` for `path`; false (with `error` set) if the path is too long.
bool UnixAddress(const std::string& path, sockaddr_un& addr, std::string& error) {
  addr = sockaddr_un{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    error = "socket path is longer than " + std::to_string(sizeof(addr.sun_path) - 1) +
            " bytes: " + path;
    return false;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return true;
}

OpenedChannel ConnectUnix(const std::string& path) {
  OpenedChannel out;
  sockaddr_un addr;
  if (!UnixAddress(path, addr, out.error)) return out;
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    out.error = ErrnoText("socket", errno);
    return out;
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    // EAGAIN: the listener's backlog is full. Waiting here would be an
    // unbounded wait, so it counts as a failed attempt like any other.
    out.error = ErrnoText("connect " + path, errno);
    return out;
  }
  out.fd = std::move(fd);
  return out;
}

// Takes the next connection on the listening socket, waiting at most
// kAcceptWaitMs (less if the wake fd fires).
OpenedChannel AcceptUnix(const ChannelSpec& spec) {
  OpenedChannel out;
  // One text for "nobody came" whatever ended the wait, so that the agent's
  // repeat filter logs it once.
  const std::string nobody = "no host connected to " + spec.listen_path + " yet";
  const int64_t deadline = ClockMs(CLOCK_MONOTONIC) + kAcceptWaitMs;
  while (true) {
    out.fd = UniqueFd(accept4(spec.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (out.fd.valid()) return out;
    // ECONNABORTED: a client gave up while queued; take the next one.
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
      out.error = ErrnoText("accept on " + spec.listen_path, errno);
      return out;
    }
    const int64_t left = deadline - ClockMs(CLOCK_MONOTONIC);
    if (left <= 0) {
      out.error = nobody;
      return out;
    }
    pollfd fds[2] = {{spec.listen_fd, POLLIN, 0}, {spec.wake_fd, POLLIN, 0}};
    const int n = poll(fds, spec.wake_fd >= 0 ? 2 : 1, static_cast<int>(left));
    if (n > 0 && (fds[1].revents & POLLIN)) {
      // The wake fd is left readable for the agent to act on.
      out.error = nobody;
      return out;
    }
  }
}

OpenedChannel OpenVirtioPort(const ChannelSpec& spec) {
  OpenedChannel out;
  std::string device = FindVirtioPort(spec.sysfs_dir, spec.port_name);
  if (device.empty()) {
    out.error = "no virtio-serial port named '" + spec.port_name + "' under " + spec.sysfs_dir +
                " (was the VM started with the agent channel?)";
    return out;
  }
  std::string path = "/dev/" + device;
  out.fd = UniqueFd(open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!out.fd.valid()) out.error = ErrnoText("open " + path, errno);
  return out;
}

}  // namespace

std::string FindVirtioPort(const std::string& sysfs_dir, const std::string& port_name) {
  DIR* dir = opendir(sysfs_dir.c_str());
  if (dir == nullptr) return {};
  std::string found;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (ReadAttribute(sysfs_dir + "/" + name + "/name") == port_name) {
      found = name;
      break;
    }
  }
  closedir(dir);
  return found;
}

ChannelListener::~ChannelListener() {
  if (path_.empty()) return;
  // Only our own socket file: another agent may have replaced it since.
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
    unlink(path_.c_str());
  }
}

std::string ChannelListener::Listen(const std::string& path) {
  sockaddr_un addr;
  std::string error;
  if (!UnixAddress(path, addr, error)) return error;
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return path + " exists and is not a socket; not replacing it";
    // A socket with a listener accepts a non-blocking connect (or has a full
    // backlog); a stale one refuses it.
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        (connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
         errno == EAGAIN)) {
      return "another process listens on " + path;
    }
    unlink(path.c_str());
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoText("socket", errno);
  // Mode 0600 from the start: whoever connects can run commands as the
  // agent's user. The agent has one thread, so the umask is ours alone.
  const mode_t old_umask = umask(0177);
  const int rc = bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  umask(old_umask);
  if (rc != 0) return ErrnoText("bind " + path, bind_errno);
  if (lstat(path.c_str(), &st) != 0) return ErrnoText("stat " + path, errno);
  path_ = path;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  // One connection is served at a time; a few more may queue meanwhile.
  if (listen(fd.get(), 8) != 0) return ErrnoText("listen on " + path, errno);
  fd_ = std::move(fd);
  return {};
}

OpenedChannel OpenChannel(const ChannelSpec& spec) {
  if (!spec.connect_path.empty()) return ConnectUnix(spec.connect_path);
  if (spec.listen_fd >= 0) return AcceptUnix(spec);
  return OpenVirtioPort(spec);
}

}  // namespace cove::agent
