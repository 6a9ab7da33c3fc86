// Supervision of the container runtime daemons in the guest (containerd,
// dockerd): started in the order the host lists them, restarted with backoff
// when they exit, their output kept in /var/log/cove/NAME.log, and reported
// READY only once their socket accepts a connection.
//
// It outlives link sessions: the runtime keeps running while coved is away.
// It also outlives the agent: each service's pid is kept in
// /run/cove/NAME.pid, and an agent that starts while its service still runs
// (the agent was killed and respawned) adopts it instead of starting a
// second one, watching it through a pidfd.
// Threading: the agent's one thread; time is passed in, so it is testable.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cove/agent/v1/agent.pb.h"

namespace cove::agent {

struct ServiceDef {
  std::string name;
  std::vector<std::string> argv;
  // Readiness: this unix socket accepts a connection.
  std::string socket;
  // And answers an HTTP GET of this path with 200 (dockerd creates its
  // socket seconds before it serves the API).
  std::string http_ping;
  // Must be READY before this one starts (dockerd needs containerd).
  std::string after;
  // Its /proc/PID/oom_score_adj: what Debian's systemd units give it, so a
  // machine out of memory loses a container's process first.
  int oom_score_adj = 0;
  // Kernel modules it makes the kernel load one by one as it starts (each
  // through modprobe, under emulation about 0.1 s apiece): loaded together
  // by one `modprobe -a` when it is first wanted, while what it waits for
  // starts.
  std::vector<std::string> modules;
};

// The services the agent knows how to run; the host names them.
const ServiceDef* FindService(const std::string& name);

class Supervisor {
 public:
  // Restart backoff doubles from kMinBackoffMs to kMaxBackoffMs and starts
  // over once a run lasted kStableMs.
  static constexpr int64_t kMinBackoffMs = 500;
  static constexpr int64_t kMaxBackoffMs = 10000;
  static constexpr int64_t kStableMs = 30000;
  static constexpr int64_t kReadyPollMs = 50;
  // A log file larger than this at (re)start is moved to NAME.log.1.
  static constexpr off_t kMaxLogBytes = 8 << 20;

  // `log_dir` holds the logs (created); `on_status` hears every change.
  Supervisor(std::string log_dir, std::function<void(const v1::ServiceStatus&)> on_status,
             std::string run_dir = "/run/cove");
  ~Supervisor();

  // Lets SetWanted load services' kernel modules (in a guest only).
  void EnableModuleLoading() { load_modules_ = true; }
  // Wanted services, in start order. Unknown names are logged and skipped.
  void SetWanted(const std::vector<std::string>& names, int64_t now_ms);
  // A child exited; false if `pid` is not a service.
  bool OnChildExit(pid_t pid, int wait_status, int64_t now_ms);
  // Adopted services are watched through pidfds: poll them for POLLIN and
  // pass those that fire to OnPidfdReady.
  void CollectPollFds(std::vector<int>& fds) const;
  void OnPidfdReady(int fd, int64_t now_ms);
  // Starts, restarts and readiness checks due by now.
  void Tick(int64_t now_ms);
  // When Tick() next has something to do; INT64_MAX for nothing.
  int64_t NextDeadlineMs() const;
  // True once SetWanted was called and every wanted service is ready.
  bool AllWantedReady() const;
  // The current status of every service, e.g. for a new session.
  std::vector<v1::ServiceStatus> Statuses() const;
  // SIGTERM to all, for agent exit.
  void StopAll();

 private:
  struct Service {
    const ServiceDef* def = nullptr;
    bool wanted = false;
    pid_t pid = -1;
    v1::ServiceStatus::State state = v1::ServiceStatus::STOPPED;
    uint32_t restarts = 0;
    std::string last_exit;
    int64_t started_ms = 0;
    int64_t next_action_ms = 0;  // start or readiness check
    int64_t backoff_ms = kMinBackoffMs;
    int pidfd = -1;  // adopted (not our child): its exit shows here
    bool modules_asked = false;
  };

  void LoadModules(Service& s);

  void Start(Service& s, int64_t now_ms);
  // A still-running instance from an earlier agent, if its pid file names one.
  bool Adopt(Service& s, int64_t now_ms);
  void Exited(Service& s, const std::string& how, int64_t now_ms);
  void Report(const Service& s);
  v1::ServiceStatus StatusOf(const Service& s) const;
  bool DependencyReady(const Service& s) const;

  std::string log_dir_;
  std::string run_dir_;
  std::function<void(const v1::ServiceStatus&)> on_status_;
  std::vector<std::string> order_;
  std::map<std::string, Service> services_;
  bool wanted_set_ = false;
  bool load_modules_ = false;
};

// "exited 1", "killed by signal 9".
std::string DescribeWaitStatus(int wait_status);

}  // namespace cove::agent
