#include "guest/agent/core/control.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "guest/agent/core/log.h"

#ifndef COVE_VERSION
#error "COVE_VERSION must be defined by the build (the project version)"
#endif

namespace cove::agent {

AgentIdentity CurrentIdentity(uint64_t boot_to_agent_ms) {
  AgentIdentity identity;
  identity.agent_version = COVE_VERSION;
  identity.kernel = ReadKernelInfo();
  identity.boot_to_agent_ms = boot_to_agent_ms;
  identity.pid = static_cast<uint32_t>(getpid());
  return identity;
}

v1::GuestToHost MakeHello(const AgentIdentity& identity, uint64_t session_id) {
  v1::GuestToHost message;
  v1::Hello* hello = message.mutable_hello();
  hello->set_protocol_version(kProtocolVersion);
  hello->set_agent_version(identity.agent_version);
  hello->set_session_id(session_id);
  hello->set_kernel_release(identity.kernel.release);
  hello->set_arch(identity.kernel.arch);
  hello->set_boot_to_agent_ms(identity.boot_to_agent_ms);
  hello->set_uptime_ms(static_cast<uint64_t>(ClockMs(CLOCK_BOOTTIME)));
  hello->set_agent_pid(identity.pid);
  return message;
}

v1::GuestToHost MakeHeartbeat(uint64_t seq) {
  v1::GuestToHost message;
  v1::Heartbeat* heartbeat = message.mutable_heartbeat();
  heartbeat->set_seq(seq);
  heartbeat->set_uptime_ms(static_cast<uint64_t>(ClockMs(CLOCK_BOOTTIME)));
  MemInfo mem = ReadMemInfo();
  heartbeat->set_mem_total_bytes(mem.total_bytes);
  heartbeat->set_mem_available_bytes(mem.available_bytes);
  heartbeat->set_load1_x100(ReadLoad1x100());
  Pressure pressure = ReadMemoryPressure();
  heartbeat->set_psi(pressure.available);
  heartbeat->set_psi_some_avg10_x100(pressure.some_avg10_x100);
  heartbeat->set_psi_full_avg10_x100(pressure.full_avg10_x100);
  DiskUse disk = ReadDiskUse();
  heartbeat->set_disk_total_bytes(disk.total_bytes);
  heartbeat->set_disk_free_bytes(disk.free_bytes);
  heartbeat->set_unix_time_ms(ClockMs(CLOCK_REALTIME));
  return message;
}

v1::GuestToHost MakeShutdownAck() {
  v1::GuestToHost message;
  message.mutable_shutdown_ack();
  return message;
}

link::Frame ControlFrame(const v1::GuestToHost& message) {
  link::Frame frame;
  frame.type = link::FrameType::kControl;
  frame.stream_id = 0;
  message.SerializeToString(&frame.payload);
  return frame;
}

void CorrectClock(int64_t host_time_unix_ms) {
  if (host_time_unix_ms <= 0) return;  // the host did not say
  int64_t skew = host_time_unix_ms - ClockMs(CLOCK_REALTIME);
  if (skew >= -kMaxClockSkewMs && skew <= kMaxClockSkewMs) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(host_time_unix_ms / 1000);
  ts.tv_nsec = static_cast<long>(host_time_unix_ms % 1000) * 1000000;
  if (clock_settime(CLOCK_REALTIME, &ts) != 0) {
    Log("guest clock is %lld ms off the host's but cannot be set: %s", static_cast<long long>(skew),
        std::strerror(errno));
    return;
  }
  Log("set the guest clock to the host's (it was %lld ms off)", static_cast<long long>(skew));
}

void AskInitToShutDown(bool reboot) {
  // busybox init: SIGUSR2 powers off, SIGTERM reboots. The marker file
  // tells the image's rc.shutdown to power off at once after a clean
  // unmount instead of waiting out busybox init's grace sleeps.
  if (!reboot) {
    int marker = open("/run/cove/poweroff-requested", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (marker >= 0) close(marker);
  }
  const int sig = reboot ? SIGTERM : SIGUSR2;
  if (kill(1, sig) != 0) {
    Log("cannot signal init to %s: %s", reboot ? "reboot" : "power off", std::strerror(errno));
  } else {
    Log("asked init to %s", reboot ? "reboot" : "power off");
  }
}

}  // namespace cove::agent
