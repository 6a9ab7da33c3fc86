#include "guest/agent/port.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

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

OpenedChannel ConnectUnix(const std::string& path) {
  OpenedChannel out;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    out.error = "socket path is longer than " + std::to_string(sizeof(addr.sun_path) - 1) +
                " bytes: " + path;
    return out;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
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

OpenedChannel OpenChannel(const ChannelSpec& spec) {
  return spec.connect_path.empty() ? OpenVirtioPort(spec) : ConnectUnix(spec.connect_path);
}

}  // namespace cove::agent
