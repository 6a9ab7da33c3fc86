#include "guest/agent/runtime/services.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"
#include "guest/agent/core/unique_fd.h"
#include "guest/agent/runtime/unix_http.h"
#include "guest/agent/streams/exec.h"

namespace cove::agent {
namespace {

const std::vector<ServiceDef>& KnownServices() {
  static const std::vector<ServiceDef> defs = {
      // Configuration lives in the image: /etc/containerd/config.toml and
      // /etc/docker/daemon.json (which points dockerd at this containerd).
      {"containerd", {"containerd"}, "/run/containerd/containerd.sock", "", "", -999},
      {"dockerd",
       {"dockerd", "--host=unix:///run/docker.sock"},
       "/run/docker.sock",
       "/_ping",
       "containerd",
       -500,
       // What dockerd's network set-up (bridge, iptables through nf_tables)
       // and overlay2 ask for, dependencies left to modprobe.
       {"overlay", "br_netfilter", "nf_nat", "nf_conntrack_netlink", "nft_chain_nat", "nft_compat",
        "xt_MASQUERADE", "xt_addrtype", "xt_conntrack", "xfrm_user"}},
  };
  return defs;
}

// Connects to `path` and, with `http_path`, asks for it over HTTP/1.0 and
// wants a 200. The HTTP exchange blocks for at most kPingTimeoutMs: it only
// runs while a service starts.
constexpr int kPingTimeoutMs = 200;

bool SocketAnswers(const std::string& path, const std::string& http_path) {
  if (http_path.empty()) return UnixConnect(path, kPingTimeoutMs).valid();
  auto response = UnixHttpGet(path, http_path, kPingTimeoutMs, 64);
  return response && HttpStatus(*response) == 200;
}

}  // namespace

const ServiceDef* FindService(const std::string& name) {
  for (const ServiceDef& def : KnownServices()) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) return "exited " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return "killed by signal " + std::to_string(WTERMSIG(wait_status));
  return "ended (status " + std::to_string(wait_status) + ")";
}

Supervisor::Supervisor(std::string log_dir, std::function<void(const v1::ServiceStatus&)> on_status,
                       std::string run_dir)
    : log_dir_(std::move(log_dir)),
      run_dir_(std::move(run_dir)),
      on_status_(std::move(on_status)) {}

Supervisor::~Supervisor() {
  for (auto& [name, s] : services_) {
    if (s.pidfd >= 0) close(s.pidfd);
  }
}

bool Supervisor::Adopt(Service& s, int64_t now_ms) {
  std::ifstream in(run_dir_ + "/" + s.def->name + ".pid");
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 1) return false;
  // The pid must still be that service, not a recycled number.
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!(comm >> name) || name != s.def->argv[0].substr(0, 15)) return false;
  // glibc 2.36 declares pidfd_open without C linkage for C++; call it directly.
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return false;
  s.pid = pid;
  s.pidfd = fd;
  s.started_ms = now_ms;
  s.state = v1::ServiceStatus::STARTING;
  s.next_action_ms = now_ms;
  Log("adopted %s (pid %d) from an earlier agent", s.def->name.c_str(), pid);
  Report(s);
  return true;
}

void Supervisor::CollectPollFds(std::vector<int>& fds) const {
  for (const auto& [name, s] : services_) {
    if (s.pidfd >= 0) fds.push_back(s.pidfd);
  }
}

void Supervisor::OnPidfdReady(int fd, int64_t now_ms) {
  for (auto& [name, s] : services_) {
    if (s.pidfd != fd) continue;
    close(s.pidfd);
    s.pidfd = -1;
    s.pid = -1;
    // Not our child: its status went to init.
    Exited(s, "ended (adopted; status unknown)", now_ms);
    return;
  }
}

void Supervisor::SetWanted(const std::vector<std::string>& names, int64_t now_ms) {
  std::vector<std::string> order;
  for (const std::string& name : names) {
    const ServiceDef* def = FindService(name);
    if (def == nullptr) {
      Log("unknown service '%s' asked for; ignoring it", name.c_str());
      continue;
    }
    order.push_back(name);
    Service& s = services_[name];
    s.def = def;
    if (!s.wanted) {
      s.wanted = true;
      s.next_action_ms = now_ms;
      s.backoff_ms = kMinBackoffMs;
    }
    LoadModules(s);
  }
  for (auto& [name, s] : services_) {
    if (std::find(order.begin(), order.end(), name) != order.end() || !s.wanted) continue;
    s.wanted = false;
    if (s.pid > 0) kill(s.pid, SIGTERM);
    s.state = v1::ServiceStatus::STOPPED;
    Report(s);
  }
  order_ = std::move(order);
  wanted_set_ = true;
  Tick(now_ms);
}

bool Supervisor::AllWantedReady() const {
  if (!wanted_set_) return false;
  return std::all_of(services_.begin(), services_.end(), [](const auto& entry) {
    return !entry.second.wanted || entry.second.state == v1::ServiceStatus::READY;
  });
}

void Supervisor::LoadModules(Service& s) {
  if (!load_modules_ || s.modules_asked || s.def->modules.empty()) return;
  s.modules_asked = true;
  std::vector<std::string> argv = {"modprobe", "-a", "-q"};
  argv.insert(argv.end(), s.def->modules.begin(), s.def->modules.end());
  const pid_t pid = SpawnDetached(argv, -1, 0);
  // Not waited for: the service starts anyway, and the kernel loads what is
  // still missing on demand. Reaped with the agent's other children.
  if (pid < 0) Log("cannot load %s's modules: fork: %s", s.def->name.c_str(), std::strerror(errno));
}

bool Supervisor::DependencyReady(const Service& s) const {
  if (s.def->after.empty()) return true;
  auto it = services_.find(s.def->after);
  return it == services_.end() || !it->second.wanted ||
         it->second.state == v1::ServiceStatus::READY;
}

void Supervisor::Start(Service& s, int64_t now_ms) {
  if (Adopt(s, now_ms)) return;
  mkdir(log_dir_.c_str(), 0755);
  const std::string log_path = log_dir_ + "/" + s.def->name + ".log";
  struct stat st {};
  if (stat(log_path.c_str(), &st) == 0 && st.st_size > kMaxLogBytes) {
    rename(log_path.c_str(), (log_path + ".1").c_str());
  }
  UniqueFd log_fd(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  const pid_t pid = SpawnDetached(s.def->argv, log_fd.get(), s.def->oom_score_adj);
  if (pid < 0) {
    Log("cannot start %s: fork: %s", s.def->name.c_str(), std::strerror(errno));
    s.next_action_ms = now_ms + s.backoff_ms;
    return;
  }
  s.pid = pid;
  s.started_ms = now_ms;
  s.state = v1::ServiceStatus::STARTING;
  s.next_action_ms = now_ms + kReadyPollMs;
  mkdir(run_dir_.c_str(), 0755);
  std::ofstream(run_dir_ + "/" + s.def->name + ".pid") << pid << "\n";
  Log("started %s (pid %d, log %s)", s.def->name.c_str(), pid, log_path.c_str());
  Report(s);
}

bool Supervisor::OnChildExit(pid_t pid, int wait_status, int64_t now_ms) {
  for (auto& [name, s] : services_) {
    if (s.pid != pid || s.pidfd >= 0) continue;
    s.pid = -1;
    Exited(s, DescribeWaitStatus(wait_status), now_ms);
    return true;
  }
  return false;
}

void Supervisor::Exited(Service& s, const std::string& how, int64_t now_ms) {
  s.last_exit = how;
  unlink((run_dir_ + "/" + s.def->name + ".pid").c_str());
  if (!s.wanted) {
    s.state = v1::ServiceStatus::STOPPED;
    Report(s);
    return;
  }
  if (now_ms - s.started_ms >= kStableMs) s.backoff_ms = kMinBackoffMs;
  Log("%s %s; restarting in %lld ms", s.def->name.c_str(), s.last_exit.c_str(),
      static_cast<long long>(s.backoff_ms));
  s.state = v1::ServiceStatus::RESTARTING;
  s.restarts++;
  s.next_action_ms = now_ms + s.backoff_ms;
  s.backoff_ms = std::min(s.backoff_ms * 2, kMaxBackoffMs);
  Report(s);
}

void Supervisor::Tick(int64_t now_ms) {
  for (const std::string& name : order_) {
    Service& s = services_[name];
    if (!s.wanted || now_ms < s.next_action_ms) continue;
    if (s.pid < 0) {
      if (DependencyReady(s)) {
        Start(s, now_ms);
      } else {
        s.next_action_ms = now_ms + kReadyPollMs;
      }
    } else if (s.state == v1::ServiceStatus::STARTING) {
      if (SocketAnswers(s.def->socket, s.def->http_ping)) {
        s.state = v1::ServiceStatus::READY;
        s.next_action_ms = INT64_MAX;
        Log("%s is ready (%lld ms after start)", name.c_str(),
            static_cast<long long>(now_ms - s.started_ms));
        Report(s);
        // Services waiting on this one may start now.
        Tick(now_ms);
        return;
      }
      s.next_action_ms = now_ms + kReadyPollMs;
    }
  }
}

int64_t Supervisor::NextDeadlineMs() const {
  int64_t next = INT64_MAX;
  for (const auto& [name, s] : services_) {
    if (s.wanted) next = std::min(next, s.next_action_ms);
  }
  return next;
}

v1::ServiceStatus Supervisor::StatusOf(const Service& s) const {
  v1::ServiceStatus status;
  status.set_name(s.def->name);
  status.set_state(s.state);
  status.set_pid(s.pid > 0 ? static_cast<uint32_t>(s.pid) : 0);
  status.set_restarts(s.restarts);
  status.set_last_exit(s.last_exit);
  status.set_log_path(log_dir_ + "/" + s.def->name + ".log");
  return status;
}

void Supervisor::Report(const Service& s) {
  if (on_status_) on_status_(StatusOf(s));
}

std::vector<v1::ServiceStatus> Supervisor::Statuses() const {
  std::vector<v1::ServiceStatus> out;
  for (const auto& [name, s] : services_) out.push_back(StatusOf(s));
  return out;
}

void Supervisor::StopAll() {
  for (auto& [name, s] : services_) {
    s.wanted = false;
    if (s.pid > 0) kill(s.pid, SIGTERM);
  }
}

}  // namespace cove::agent
