#include "guest/agent/reports/emulation.h"

#include <algorithm>
#include <climits>

#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"

namespace cove::agent {

void Emulation::Configure(bool wanted) {
  if (!wanted || registered_) return;
  registered_ = true;
  binfmt_ = RegisterBinfmt();
  for (const BinfmtHandler& h : binfmt_.handlers) {
    Log("binfmt: %s runs %s binaries through %s", h.name.c_str(), h.arch.c_str(),
        h.interpreter.c_str());
  }
  if (!binfmt_.error.empty()) Log("binfmt: %s", binfmt_.error.c_str());
  due_ms_ = 0;
}

void Emulation::OnProcessEvent(int64_t now_ms) {
  if (binfmt_.handlers.empty()) return;
  due_ms_ = std::min(due_ms_, now_ms + kAfterEventMs);
}

int64_t Emulation::NextDueMs() const {
  return registered_ && !binfmt_.handlers.empty() ? due_ms_ : INT64_MAX;
}

std::optional<v1::Emulation> Emulation::Take(int64_t now_ms, Want want, ContainerNames& names) {
  if (!registered_) return std::nullopt;
  const bool force = want != Want::kIfChanged;
  const bool refresh = want == Want::kRefresh;
  if (!force && now_ms < due_ms_) return std::nullopt;
  due_ms_ = now_ms + kIdleMs;
  v1::Emulation report;
  for (const BinfmtHandler& h : binfmt_.handlers) {
    report.add_handlers(h.name + " (" + h.arch + ", " + h.interpreter + ")");
  }
  report.set_error(binfmt_.error);
  // What changes the report is which processes run emulated, not their RSS.
  std::string key = report.SerializeAsString();
  arch_of_.clear();
  // Naming containers asks dockerd, which may be slow or hung: one budget for
  // the whole scan, after which only known names are used.
  const int64_t ask_until_ms =
      ClockMs(CLOCK_MONOTONIC) + (refresh ? kRefreshAskBudgetMs : kAskBudgetMs);
  const auto wait = refresh ? ContainerNames::Wait::kSkipIfSilent : ContainerNames::Wait::kRespect;
  bool unnamed = false;
  for (const EmulatedProcessInfo& p : ScanEmulated(binfmt_.handlers, kMaxProcesses)) {
    arch_of_[static_cast<uint32_t>(p.pid)] = p.arch;
    v1::EmulatedProcess* out = report.add_processes();
    out->set_pid(static_cast<uint32_t>(p.pid));
    out->set_comm(p.comm);
    out->set_arch(p.arch);
    out->set_cgroup(p.cgroup);
    out->set_rss_bytes(p.rss_bytes);
    const int64_t left_ms = ask_until_ms - ClockMs(CLOCK_MONOTONIC);
    const int ask_ms = static_cast<int>(std::clamp<int64_t>(
        left_ms, 0, refresh ? kRefreshAskBudgetMs : ContainerNames::kAskTimeoutMs));
    if (auto container = names.Resolve(p.cgroup, ask_ms, wait)) {
      out->set_container_id(container->id);
      out->set_container_name(container->name);
      unnamed = unnamed || container->name.empty();
    }
    // A name found later, once dockerd answers, is a change to report.
    key += std::to_string(p.pid) + p.arch + p.cgroup + " " + out->container_name() + ";";
  }
  if (unnamed) {
    // From the scan's end: the names' waits began at their asks, within it.
    due_ms_ = std::min(due_ms_, ClockMs(CLOCK_MONOTONIC) + unnamed_rescan_ms_);
    unnamed_rescan_ms_ = std::min(unnamed_rescan_ms_ * 2, kIdleMs);
  } else {
    unnamed_rescan_ms_ = kAfterEventMs;
  }
  if (!force && key == last_sent_) return std::nullopt;
  last_sent_ = key;
  return report;
}

std::string Emulation::ArchOf(uint32_t pid) const {
  auto it = arch_of_.find(pid);
  return it == arch_of_.end() ? "" : it->second;
}

}  // namespace cove::agent
