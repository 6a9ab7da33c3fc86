#include "daemon/machine/guest_health.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/sizes.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

using google::protobuf::util::TimeUtil;

// docker's word for an architecture ("aarch64" -> "arm64").
std::string PlatformArch(const std::string& arch) {
  if (arch == "aarch64") return "arm64";
  if (arch == "x86_64") return "amd64";
  return arch;
}

// The memory to suggest: twice what there was, in whole GiB, at least 2.
uint64_t SuggestedMemory(uint64_t had) {
  uint64_t gib = std::max<uint64_t>(2, (2 * had + kGiB - 1) / kGiB);
  return gib * kGiB;
}

}  // namespace

cove::v1::OomKill DescribeOomKill(const cove::agent::v1::OomKill& kill, const std::string& machine,
                                  const std::string& machine_arch) {
  cove::v1::OomKill out;
  out.set_pid(kill.pid());
  out.set_process(BoundedGuestText(kill.comm()));
  out.set_rss_bytes(kill.rss_bytes());
  out.set_scope(kill.cgroup_limit() ? cove::v1::OOM_SCOPE_CGROUP : cove::v1::OOM_SCOPE_MACHINE);
  out.set_limit_bytes(kill.cgroup_limit() ? kill.limit_bytes() : kill.mem_total_bytes());
  out.set_machine_memory_bytes(kill.mem_total_bytes());
  out.set_cgroup(BoundedGuestText(kill.task_cgroup()));
  out.set_container_id(BoundedGuestText(kill.container_id()));
  out.set_container_name(BoundedGuestText(kill.container_name()));
  out.set_emulated_arch(BoundedGuestText(kill.emulated_arch()));
  out.set_guest_uptime_ms(kill.uptime_ms());
  out.set_unlogged_count(kill.unlogged_count());

  // A count from memory.events names no process: the log lost its lines.
  const std::string who =
      kill.unlogged_count() > 0
          ? absl::StrCat(kill.unlogged_count(),
                         " process(es) the guest's kernel log did not name (counted in ",
                         BoundedGuestText(kill.task_cgroup()), "/memory.events)")
          : absl::StrCat(out.process(), " (pid ", out.pid(), ", ", FormatSize(out.rss_bytes()),
                         " resident)");
  const std::string container =
      out.container_name().empty() ? out.container_id().substr(0, 12) : out.container_name();
  std::string fix;
  if (kill.cgroup_limit()) {
    const std::string limit = out.limit_bytes() > 0
                                  ? absl::StrCat("its ", FormatSize(out.limit_bytes()), " limit")
                                  : "its memory limit";
    if (!container.empty()) {
      out.set_summary(
          absl::StrCat("container ", container, " hit ", limit, ": the kernel killed ", who));
      fix = absl::StrCat("raise container ", container,
                         "'s limit (docker run -m / --memory), or make it use less");
    } else {
      const std::string cgroup = kill.oom_cgroup().empty() ? out.cgroup() : kill.oom_cgroup();
      out.set_summary(absl::StrCat("cgroup ", BoundedGuestText(cgroup), " hit ", limit,
                                   ": the kernel killed ", who));
      fix = absl::StrCat("raise memory.max of ", BoundedGuestText(cgroup), " in the guest");
    }
  } else {
    const std::string in = container.empty() ? "" : absl::StrCat(" in container ", container);
    out.set_summary(absl::StrCat("machine ", machine, " ran out of its ",
                                 FormatSize(out.machine_memory_bytes()), ": the kernel killed ",
                                 who, in));
    fix = absl::StrCat("give it more: cove stop ", machine, " && cove set ", machine, " --memory ",
                       FormatSize(SuggestedMemory(out.machine_memory_bytes())));
  }
  if (!out.emulated_arch().empty()) {
    absl::StrAppend(&fix, "; it ran as ", PlatformArch(out.emulated_arch()),
                    " under emulation, which costs memory and time: use an ",
                    PlatformArch(machine_arch), " image");
  }
  out.set_fix(fix);
  return out;
}

void GuestHealth::OnHello(const cove::agent::v1::Hello& hello, int64_t steady_now_ms) {
  hello_uptime_ms_ = hello.uptime_ms();
  hello_steady_ms_ = steady_now_ms;
}

void GuestHealth::OnHeartbeat(const cove::agent::v1::Heartbeat& beat, int64_t steady_now_ms,
                              int64_t unix_now_ms) {
  if (kills_untold_ > 0 && steady_now_ms - kill_window_start_ms_ >= kKillWindowMs &&
      !record_.oom_kills().empty()) {
    // The burst is over and no kill came after it to carry its count.
    const cove::v1::OomKill& last = record_.oom_kills(record_.oom_kills_size() - 1);
    publish_(cove::v1::EVENT_KIND_OOM_KILL,
             absl::StrCat(UntoldKills(), "; the last: ", last.summary(), ". Fix: ", last.fix()),
             &last);
    kills_untold_ = 0;
    kill_window_start_ms_ = steady_now_ms;
    kills_in_window_ = 1;
  }
  cove::v1::GuestInfo* g = record_.mutable_guest();
  g->set_mem_total_bytes(beat.mem_total_bytes());
  g->set_mem_available_bytes(beat.mem_available_bytes());
  g->set_psi(beat.psi());
  g->set_psi_some_avg10(beat.psi_some_avg10_x100() / 100.0);
  g->set_psi_full_avg10(beat.psi_full_avg10_x100() / 100.0);
  g->set_disk_total_bytes(beat.disk_total_bytes());
  g->set_disk_free_bytes(beat.disk_free_bytes());
  if (beat.unix_time_ms() > 0) g->set_clock_offset_ms(beat.unix_time_ms() - unix_now_ms);
  *g->mutable_last_heartbeat() = TimeUtil::GetCurrentTime();
  if (!beat.psi()) return;
  const double some = g->psi_some_avg10();
  if (!g->memory_pressure()) {
    high_beats_ = some >= kPressureHighPercent ? high_beats_ + 1 : 0;
    if (high_beats_ < kPressureBeats) return;
    g->set_memory_pressure(true);
    const uint64_t avail = g->mem_available_bytes();
    publish_(cove::v1::EVENT_KIND_MEMORY_PRESSURE,
             absl::StrCat("memory pressure is high: tasks waited for memory ", g->psi_some_avg10(),
                          "% of the last 10 s (", FormatSize(avail), " of ",
                          FormatSize(g->mem_total_bytes()),
                          " available); the OOM killer may come next: cove stop ", machine_,
                          " && cove set ", machine_, " --memory ",
                          FormatSize(SuggestedMemory(g->mem_total_bytes()))),
             nullptr);
  } else if (some < kPressureHighPercent / 2) {
    g->set_memory_pressure(false);
    high_beats_ = 0;
    publish_(cove::v1::EVENT_KIND_MEMORY_PRESSURE,
             absl::StrCat("memory pressure is back to normal (", g->psi_some_avg10(), "%)"),
             nullptr);
  }
}

void GuestHealth::OnOomKill(const cove::agent::v1::OomKill& kill, int64_t steady_now_ms,
                            int64_t unix_now_ms) {
  for (const cove::v1::OomKill& known : record_.oom_kills()) {
    // Replays of kills this boot already told (a reconnect, a restarted coved).
    if (known.pid() == kill.pid() && known.guest_uptime_ms() == kill.uptime_ms() &&
        known.cgroup() == BoundedGuestText(kill.task_cgroup())) {
      return;
    }
  }
  cove::v1::OomKill out = DescribeOomKill(kill, machine_, record_.guest().arch());
  // When: the guest's clock since boot, against the hello's.
  const int64_t guest_now_ms =
      static_cast<int64_t>(hello_uptime_ms_) + (steady_now_ms - hello_steady_ms_);
  const int64_t ago_ms =
      std::max<int64_t>(0, guest_now_ms - static_cast<int64_t>(kill.uptime_ms()));
  *out.mutable_time() = TimeUtil::MillisecondsToTimestamp(unix_now_ms - ago_ms);
  spdlog::warn("{}: OOM kill: {}; {}", machine_, out.summary(), out.fix());
  auto* kills = record_.mutable_oom_kills();
  *kills->Add() = out;
  if (kills->size() > kMaxKills) kills->DeleteSubrange(0, kills->size() - kMaxKills);
  if (steady_now_ms - kill_window_start_ms_ >= kKillWindowMs) {
    kill_window_start_ms_ = steady_now_ms;
    kills_in_window_ = 0;
  }
  if (++kills_in_window_ > kMaxKillEventsPerWindow) {
    ++kills_untold_;
    return;
  }
  std::string message = absl::StrCat(out.summary(), ". Fix: ", out.fix());
  if (kills_untold_ > 0) {
    absl::StrAppend(&message, " (and ", UntoldKills(), ", before this one)");
    kills_untold_ = 0;
  }
  publish_(cove::v1::EVENT_KIND_OOM_KILL, message, &out);
}

std::string GuestHealth::UntoldKills() const {
  return absl::StrCat(kills_untold_, kills_untold_ == 1 ? " more OOM kill" : " more OOM kills",
                      ", too many to tell one by one (cove inspect ", machine_, " lists the last ",
                      kMaxKills, ")");
}

void GuestHealth::Register(AgentLink& agent) {
  agent.Handle(cove::agent::v1::GuestToHost::kHeartbeat,
               [this](const cove::agent::v1::GuestToHost& msg) {
                 OnHeartbeat(msg.heartbeat(), static_cast<int64_t>(SteadyNowMs()),
                             TimeUtil::TimestampToMilliseconds(TimeUtil::GetCurrentTime()));
               });
  agent.Handle(cove::agent::v1::GuestToHost::kOomKill,
               [this](const cove::agent::v1::GuestToHost& msg) {
                 OnOomKill(msg.oom_kill(), static_cast<int64_t>(SteadyNowMs()),
                           TimeUtil::TimestampToMilliseconds(TimeUtil::GetCurrentTime()));
               });
}

void GuestHealth::Clear() {
  record_.clear_oom_kills();
  high_beats_ = 0;
  kills_in_window_ = 0;
  kills_untold_ = 0;
}

}  // namespace cove::daemon
