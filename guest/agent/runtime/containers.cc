#include "guest/agent/runtime/containers.h"

#include <algorithm>
#include <vector>

#include "guest/agent/core/sysinfo.h"
#include "guest/agent/runtime/unix_http.h"

namespace cove::agent {
namespace {

bool IsDockerId(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::optional<ContainerRef> ContainerOfCgroup(std::string_view cgroup) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos < cgroup.size()) {
    size_t end = cgroup.find('/', pos);
    if (end == std::string_view::npos) end = cgroup.size();
    if (end > pos) parts.push_back(cgroup.substr(pos, end - pos));
    pos = end + 1;
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    if (p.starts_with("docker-") && p.ends_with(".scope") &&
        IsDockerId(p.substr(7, p.size() - 13))) {
      return ContainerRef{std::string(p.substr(7, 64)), ""};
    }
    if (p == "docker" && i + 1 < parts.size() && IsDockerId(parts[i + 1])) {
      return ContainerRef{std::string(parts[i + 1]), ""};
    }
  }
  if (parts.size() == 2 && !parts[0].ends_with(".slice") && !parts[0].ends_with(".scope") &&
      parts[0] != "docker") {
    return ContainerRef{std::string(parts[1]), std::string(parts[1])};
  }
  return std::nullopt;
}

std::string DockerNameOf(std::string_view json) {
  constexpr std::string_view kKey = "\"Name\":\"";
  size_t at = json.find(kKey);
  if (at == std::string_view::npos) return "";
  at += kKey.size();
  if (at < json.size() && json[at] == '/') ++at;
  size_t end = json.find('"', at);
  if (end == std::string_view::npos) return "";
  return std::string(json.substr(at, end - at));
}

ContainerNames::ContainerNames(std::string docker_socket, Clock clock)
    : docker_socket_(std::move(docker_socket)), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return ClockMs(CLOCK_MONOTONIC); };
}

std::optional<ContainerRef> ContainerNames::Resolve(std::string_view cgroup, int timeout_ms,
                                                    Wait wait) {
  auto ref = ContainerOfCgroup(cgroup);
  if (!ref || !ref->name.empty()) return ref;
  if (auto it = names_.find(ref->id); it != names_.end()) {
    ref->name = it->second;
    return ref;
  }
  const int64_t now_ms = clock_();
  auto unnamed = unnamed_.find(ref->id);
  if (unnamed != unnamed_.end() && now_ms < unnamed->second.until_ms &&
      (wait == Wait::kRespect || unnamed->second.answered)) {
    return ref;
  }
  if (timeout_ms <= 0) return ref;
  auto response =
      UnixHttpGet(docker_socket_, "/containers/" + ref->id + "/json", timeout_ms, 64 * 1024);
  const int status = response ? HttpStatus(*response) : 0;
  if (status == 200) ref->name = DockerNameOf(*response);
  if (!ref->name.empty()) {
    if (unnamed != unnamed_.end()) unnamed_.erase(unnamed);
    if (names_.size() >= kMaxCached) names_.erase(names_.begin());
    names_[ref->id] = ref->name;
    return ref;
  }
  // A short ask (the end of a scan's budget) proves nothing.
  if (status == 0 && timeout_ms < kAskTimeoutMs) return ref;
  if (unnamed == unnamed_.end()) {
    if (unnamed_.size() >= kMaxCached) unnamed_.erase(unnamed_.begin());
    unnamed = unnamed_.emplace(ref->id, Unnamed{0, kFirstBackoffMs}).first;
  }
  Unnamed& u = unnamed->second;
  u.answered = status != 0;
  if (u.answered) {
    u.until_ms = now_ms + kRetryAfterMs;  // it has no name
  } else {
    u.until_ms = now_ms + u.backoff_ms;
    u.backoff_ms = std::min(u.backoff_ms * 2, kRetryAfterMs);
  }
  return ref;
}

}  // namespace cove::agent
