// Which container a process is in, from its cgroup v2 path, with the name
// people know it by: for OOM kills and emulated processes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace cove::agent {

struct ContainerRef {
  std::string id;
  std::string name;  // empty when not known
};

// docker's cgroups ("/system.slice/docker-ID.scope", "/docker/ID", with a
// 64-hex ID) and containerd's as ctr makes them ("/NAMESPACE/ID", whose name
// is the ID). nullopt for every other cgroup. Pure.
std::optional<ContainerRef> ContainerOfCgroup(std::string_view cgroup);

// docker's name in a /containers/ID/json answer ("Name":"/hog" -> "hog").
std::string DockerNameOf(std::string_view json);

class ContainerNames {
 public:
  static constexpr int kAskTimeoutMs = 300;
  // An id dockerd did not name (not up, busy, or the container gone) is not
  // asked about again for this long.
  static constexpr int64_t kRetryAfterMs = 30000;
  static constexpr size_t kMaxCached = 256;

  explicit ContainerNames(std::string docker_socket = "/run/docker.sock")
      : docker_socket_(std::move(docker_socket)) {}
  // The container of `cgroup`. A docker one is named by asking dockerd, at
  // most `timeout_ms` in all (0: only from what is known), once per id.
  // Blocks the caller for that long.
  std::optional<ContainerRef> Resolve(std::string_view cgroup, int timeout_ms = kAskTimeoutMs);

 private:
  std::string docker_socket_;
  std::map<std::string, std::string> names_;
  std::map<std::string, int64_t> unnamed_until_;  // id -> CLOCK_MONOTONIC ms
};

}  // namespace cove::agent
