// OOM kills to the host (docs/diagnosis.md): each kill as the kernel log
// tells it, the kills the log missed from the cgroups' counters right after
// each heartbeat, and this boot's kills again at the start of a session, for
// a host that was away. Each kill is named: its container (asking dockerd)
// and, if it ran emulated, its architecture.
#pragma once

#include <cstdint>
#include <string>

#include "guest/agent/core/reporter.h"
#include "guest/agent/reports/emulation.h"
#include "guest/agent/reports/oom_watch.h"
#include "guest/agent/runtime/containers.h"

namespace cove::agent {

class OomReporter final : public Reporter {
 public:
  // Asking dockerd a killed container's name.
  static constexpr int kNameTimeoutMs = 1000;

  // Reads `kernel_log` (empty: none, as on a host in tests). Containers are
  // named through `names`; the architecture comes from `emulation`'s last look.
  OomReporter(const std::string& kernel_log, ContainerNames& names, const Emulation& emulation);

  void Prepare(Host& host, PollSet& poll) override;
  void OnSessionStart(int64_t greeted_ms, Host& host) override;

  // Reads the kernel log. The kills go to `host` when it is greeted; they
  // are in the history either way.
  void ReadLog(Host* host);
  // Right after a heartbeat: the log, then the kills only the counters show.
  void AfterBeat(Host& host);

 private:
  void Enrich(v1::OomKill& kill);

  ContainerNames& names_;
  const Emulation& emulation_;
  int64_t names_until_ms_ = 0;  // the current read's budget for naming containers
  OomWatch watch_{[this](v1::OomKill& kill) { Enrich(kill); }};
};

}  // namespace cove::agent
