#include "bench/linkbench/relays.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cove/agent/v1/agent.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/forward/port_forward.h"
#include "daemon/forward/socket_forward.h"
#include "daemon/loop/event_loop.h"

extern char** environ;

namespace cove::bench {
namespace {

// User + system CPU seconds from a /proc/<pid>[/task/<tid>]/stat file; with
// `children`, plus that of children waited for.
double StatCpuSeconds(const std::string& path, bool children) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  // f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
  if (f.size() < 15) return 0;
  double ticks = std::stod(f[11]) + std::stod(f[12]);
  if (children) ticks += std::stod(f[13]) + std::stod(f[14]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class CoveRelay : public Relay {
 public:
  ~CoveRelay() override {
    if (loop_ != nullptr) {
      (void)loop_->Call([this]() {
        forwards_.clear();
        ports_.reset();
        link_.reset();
        return absl::OkStatus();
      });
      loop_->Stop();
      if (loop_thread_.joinable()) loop_thread_.join();
      loop_.reset();
    }
    if (agent_ > 0) StopChild(agent_);
  }

  const std::string& name() const override { return name_; }
  const std::string& in_path() const override { return in_path_; }
  const std::string& out_path() const override { return out_path_; }
  double CpuSeconds() override {
    return StatCpuSeconds(absl::StrCat("/proc/", agent_, "/stat"), false) +
           StatCpuSeconds(absl::StrCat("/proc/self/task/", loop_tid_, "/stat"), false);
  }

  absl::Status Start(const std::string& agent, const std::string& dir, const Sink& sink) {
    const bool tcp = TcpPortOf(sink.in_path()) != 0;
    in_path_ = tcp ? absl::StrCat("tcp:", FreeTcpPort()) : dir + "/cove-in.sock";
    out_path_ = tcp ? absl::StrCat("tcp:", FreeTcpPort()) : dir + "/cove-out.sock";
    const std::string agent_sock = dir + "/agent.sock";
    absl::StatusOr<pid_t> pid =
        Spawn({agent, "--listen", agent_sock, "--no-poweroff"}, dir + "/agent.log");
    if (!pid.ok()) return pid.status();
    agent_ = *pid;
    if (absl::Status s = AwaitSocketFile(agent_sock, agent_); !s.ok()) return s;

    loop_ = std::make_unique<daemon::EventLoop>();
    loop_thread_ = std::thread([loop = loop_.get()]() { loop->Run(); });
    auto ready = std::make_shared<std::promise<void>>();
    absl::Status started = loop_->Call([&, ready]() -> absl::Status {
      loop_tid_ = gettid();
      daemon::AgentLink::Callbacks callbacks;
      callbacks.on_hello = [this, ready, first = true](const agent::v1::Hello&) mutable {
        for (auto& forward : forwards_) forward->OnLinkReady();
        if (ports_) ports_->OnLinkReady();
        if (first) ready->set_value();
        first = false;
      };
      callbacks.on_lost = [](const std::string& why) {
        std::fprintf(stderr, "linkbench: the agent link dropped: %s\n", why.c_str());
      };
      link_ = std::make_unique<daemon::AgentLink>(*loop_, "linkbench", agent_sock, callbacks);
      if (tcp) {
        // The port forward path: static forwards from two host ports to the
        // sink's ports, which the agent (on this host) reaches as a guest's.
        cove::v1::MachineSpec spec;
        for (const auto& [host, target] :
             {std::pair{in_path_, sink.in_path()}, std::pair{out_path_, sink.out_path()}}) {
          auto* f = spec.add_static_forwards();
          f->set_proto(cove::v1::PROTO_TCP);
          f->set_host_port(TcpPortOf(host));
          f->set_guest_port(TcpPortOf(target));
        }
        ports_ = std::make_unique<daemon::PortForwarder>(
            daemon::PortForward::Env{*loop_, "linkbench", registry_,
                                     [this]() { return link_.get(); }},
            nullptr);
        ports_->SetSpec(spec);
        for (const auto& f : ports_->List()) {
          if (f.state() != cove::v1::FORWARD_STATE_LISTENING) {
            return absl::InternalError(
                absl::StrCat("forward to port ", f.guest_port(), ": ", f.error()));
          }
        }
        link_->Start();
        return absl::OkStatus();
      }
      for (const auto& [host, target] :
           {std::pair{in_path_, sink.in_path()}, std::pair{out_path_, sink.out_path()}}) {
        agent::v1::StreamOpen open;
        open.set_unix_connect(target);
        forwards_.push_back(std::make_unique<daemon::SocketForward>(
            *loop_, "linkbench", host, open, [this]() { return link_.get(); }));
        if (absl::Status s = forwards_.back()->Open(); !s.ok()) return s;
      }
      link_->Start();
      return absl::OkStatus();
    });
    if (!started.ok()) return started;
    if (ready->get_future().wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      return absl::DeadlineExceededError("cove-agent did not say hello within 10 s; see " + dir +
                                         "/agent.log");
    }
    return absl::OkStatus();
  }

 private:
  const std::string name_ = "cove";
  std::string in_path_;
  std::string out_path_;
  pid_t agent_ = -1;
  std::unique_ptr<daemon::EventLoop> loop_;
  std::thread loop_thread_;
  pid_t loop_tid_ = 0;
  // Loop thread only.
  std::unique_ptr<daemon::AgentLink> link_;
  std::vector<std::unique_ptr<daemon::SocketForward>> forwards_;
  daemon::PortRegistry registry_;
  std::unique_ptr<daemon::PortForwarder> ports_;
};

class SocatRelay : public Relay {
 public:
  ~SocatRelay() override {
    for (pid_t pid : pids_) StopChild(pid);
  }

  const std::string& name() const override { return name_; }
  const std::string& in_path() const override { return in_path_; }
  const std::string& out_path() const override { return out_path_; }
  double CpuSeconds() override {
    // The forked children count once the parent reaped them.
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    double total = 0;
    for (pid_t pid : pids_) {
      const std::string children = absl::StrCat("/proc/", pid, "/task/", pid, "/children");
      while (Clock::now() < deadline) {
        std::ifstream in(children);
        std::string text;
        if (!std::getline(in, text) || text.find_first_not_of(' ') == std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      total += StatCpuSeconds(absl::StrCat("/proc/", pid, "/stat"), true);
    }
    return total;
  }

  absl::Status Start(const std::string& socat, const std::string& dir, const std::string& tag,
                     size_t buffer, const Sink& sink) {
    name_ = buffer == 0 ? "socat" : absl::StrCat("socat -b ", buffer);
    const bool tcp = TcpPortOf(sink.in_path()) != 0;
    in_path_ = tcp ? absl::StrCat("tcp:", FreeTcpPort()) : absl::StrCat(dir, "/", tag, "-in.sock");
    out_path_ =
        tcp ? absl::StrCat("tcp:", FreeTcpPort()) : absl::StrCat(dir, "/", tag, "-out.sock");
    for (const auto& [host, target] :
         {std::pair{in_path_, sink.in_path()}, std::pair{out_path_, sink.out_path()}}) {
      std::vector<std::string> argv = {socat};
      if (buffer != 0) argv.insert(argv.end(), {"-b", std::to_string(buffer)});
      if (tcp) {
        argv.push_back(
            absl::StrCat("TCP-LISTEN:", TcpPortOf(host), ",bind=127.0.0.1,fork,reuseaddr"));
        argv.push_back(absl::StrCat("TCP:127.0.0.1:", TcpPortOf(target)));
      } else {
        argv.push_back("UNIX-LISTEN:" + host + ",fork");
        argv.push_back("UNIX-CONNECT:" + target);
      }
      absl::StatusOr<pid_t> pid = Spawn(argv, absl::StrCat(dir, "/", tag, ".log"));
      if (!pid.ok()) return pid.status();
      pids_.push_back(*pid);
      absl::Status ready =
          tcp ? AwaitTcpListener(TcpPortOf(host), *pid) : AwaitSocketFile(host, *pid);
      if (!ready.ok()) return ready;
    }
    return absl::OkStatus();
  }

 private:
  std::string name_;
  std::string in_path_;
  std::string out_path_;
  std::vector<pid_t> pids_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Relay>> StartCoveRelay(const std::string& agent,
                                                      const std::string& dir, const Sink& sink) {
  auto relay = std::make_unique<CoveRelay>();
  if (absl::Status s = relay->Start(agent, dir, sink); !s.ok()) return s;
  return relay;
}

absl::StatusOr<std::unique_ptr<Relay>> StartSocatRelay(const std::string& socat,
                                                       const std::string& dir,
                                                       const std::string& tag, size_t buffer,
                                                       const Sink& sink) {
  auto relay = std::make_unique<SocatRelay>();
  if (absl::Status s = relay->Start(socat, dir, tag, buffer, sink); !s.ok()) return s;
  return relay;
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group (so StopChild reaches socat's forked children), the
  // default mask and SIGPIPE disposition rather than the benchmark's.
  sigset_t none;
  sigemptyset(&none);
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &pipe_signal);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return absl::InternalError(absl::StrCat("spawn ", argv[0], ": ", std::strerror(rc)));
  return pid;
}

void StopChild(pid_t pid) {
  kill(-pid, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (waitpid(pid, nullptr, WNOHANG) == 0) {
    if (Clock::now() >= deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

namespace {

// Polls `ready` every 5 ms for up to 10 s, giving up early if `owner` exits.
// `what` completes "process N exited before ...".
absl::Status AwaitReady(pid_t owner, const std::string& what, const std::function<bool()>& ready) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!ready()) {
    if (waitpid(owner, nullptr, WNOHANG) == owner) {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", owner, " exited before ", what));
    }
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no ", what, " within 10 s"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status AwaitTcpListener(int port, pid_t owner) {
  // Probed by binding, not connecting: a probe connection would reach the
  // sink through the relay and count as a trial's connection.
  return AwaitReady(owner, absl::StrCat("listening on port ", port), [port] {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool taken =
        bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
  });
}

absl::Status AwaitSocketFile(const std::string& path, pid_t owner) {
  return AwaitReady(owner, "creating " + path, [&path] {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  });
}

}  // namespace cove::bench
