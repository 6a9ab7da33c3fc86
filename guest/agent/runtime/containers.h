// Which container a process is in, from its cgroup v2 path, with the name
// people know it by: for OOM kills and emulated processes.
#pragma once

#include <cstdint>
#include <functional>
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
  // An id dockerd answered for without a name (the container is gone) is not
  // asked about again for this long.
  static constexpr int64_t kRetryAfterMs = 30000;
  // dockerd silent (not up yet, or busy starting the very container): asked
  // again after this, doubling up to kRetryAfterMs.
  static constexpr int64_t kFirstBackoffMs = 1000;
  static constexpr size_t kMaxCached = 256;

  using Clock = std::function<int64_t()>;  // ms, monotonic
  explicit ContainerNames(std::string docker_socket = "/run/docker.sock", Clock clock = {});
  // Whether an id waiting out a silent dockerd is asked anyway: a kill is
  // told once, so its name is worth an ask that a scan would skip.
  enum class Wait { kRespect, kSkipIfSilent };
  // The container of `cgroup`. A docker one is named by asking dockerd, at
  // most `timeout_ms` in all (0: only from what is known); an id dockerd
  // did not name is asked again only after a wait (see above). Blocks the
  // caller for up to `timeout_ms`.
  std::optional<ContainerRef> Resolve(std::string_view cgroup, int timeout_ms = kAskTimeoutMs,
                                      Wait wait = Wait::kRespect);

 private:
  struct Unnamed {
    int64_t until_ms = 0;    // not asked before this
    int64_t backoff_ms = 0;  // the wait after the next silent ask
    bool answered = false;   // dockerd answered, without a name
  };
  std::string docker_socket_;
  Clock clock_;
  std::map<std::string, std::string> names_;
  std::map<std::string, Unnamed> unnamed_;
};

}  // namespace cove::agent
