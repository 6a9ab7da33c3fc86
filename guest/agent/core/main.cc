// cove-agent: the guest end of the cove agent link. See docs/agent-link.md.
#include <signal.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "guest/agent/core/agent.h"
#include "guest/agent/core/channel.h"
#include "guest/agent/core/control.h"
#include "guest/agent/core/flags.h"
#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"
#include "guest/agent/streams/exec.h"

namespace {

constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  // Taken first: how long the boot took until the agent ran.
  const auto boot_to_agent_ms = static_cast<uint64_t>(cove::agent::ClockMs(CLOCK_BOOTTIME));

  cove::agent::FlagsResult parsed = cove::agent::ParseFlags(argc, argv);
  if (!parsed.error.empty()) {
    std::fprintf(stderr, "cove-agent: %s (see cove-agent --help)\n", parsed.error.c_str());
    return kExitUsage;
  }
  const cove::agent::Flags& flags = parsed.flags;
  if (flags.show_help) {
    std::fputs(cove::agent::kUsage, stdout);
    return 0;
  }
  if (flags.show_version) {
    std::printf("cove-agent %s\n", COVE_VERSION);
    return 0;
  }

  // A write to a channel the host closed must fail with EPIPE, not kill us.
  signal(SIGPIPE, SIG_IGN);
  cove::agent::RaiseOpenFilesLimit();
  // SIGTERM and SIGINT arrive through a signalfd that the loop polls, so a
  // stop is handled between poll rounds, never inside one. Child processes
  // unblock these again (they do, in exec.cc and services.cc).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  if (sigprocmask(SIG_BLOCK, &stop_signals, nullptr) != 0) {
    cove::agent::Log("sigprocmask: %s", std::strerror(errno));
    return 1;
  }
  int stop_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  // Exec'd processes and supervised services are reaped in the loop too.
  sigset_t child_signals;
  sigemptyset(&child_signals);
  sigaddset(&child_signals, SIGCHLD);
  sigprocmask(SIG_BLOCK, &child_signals, nullptr);
  int child_fd = signalfd(-1, &child_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (stop_fd < 0 || child_fd < 0) {
    cove::agent::Log("signalfd: %s", std::strerror(errno));
    return 1;
  }

  // Removes its socket file when main returns.
  cove::agent::ChannelListener listener;
  if (!flags.listen_path.empty()) {
    if (std::string error = listener.Listen(flags.listen_path); !error.empty()) {
      cove::agent::Log("cannot listen: %s", error.c_str());
      return 1;
    }
    cove::agent::Log("listening on unix socket %s", flags.listen_path.c_str());
  }

  cove::agent::AgentOptions options;
  options.channel.connect_path = flags.connect_path;
  options.channel.listen_fd = listener.fd();
  options.channel.listen_path = flags.listen_path;
  options.channel.wake_fd = stop_fd;
  options.channel.port_name = flags.port_name;
  options.heartbeat_ms = flags.heartbeat_ms;
  options.poweroff = flags.poweroff;
  const bool in_guest = flags.connect_path.empty() && flags.listen_path.empty();
  if (in_guest) {
    // A guest out of memory must lose the hog, not the control path: the
    // kernel never picks the agent. Its children set their own (exec.cc,
    // services.cc).
    if (!cove::agent::SetOomScoreAdj(-1000)) {
      cove::agent::Log("cannot protect the agent from the OOM killer: %s", std::strerror(errno));
    }
  } else {
    options.kernel_log.clear();  // on a host (tests): not that kernel's kills
    options.runtime_ready_fifo.clear();
    options.load_modules = false;
  }
  cove::agent::Agent agent(std::move(options), cove::agent::CurrentIdentity(boot_to_agent_ms),
                           stop_fd, child_fd);
  return agent.Run();
}
