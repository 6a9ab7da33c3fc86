// The agent's side of foreign binaries: registers the image's binfmt
// handlers once a host asks for them, and reports which processes run
// through them (GuestToHost.emulation), looked at after processes start or
// exit and every kIdleMs otherwise. Loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/reports/binfmt.h"
#include "guest/agent/runtime/containers.h"

namespace cove::agent {

class Emulation {
 public:
  static constexpr int64_t kAfterEventMs = 1000;
  static constexpr int64_t kIdleMs = 10000;
  static constexpr size_t kMaxProcesses = 256;
  static constexpr int64_t kAskBudgetMs = 500;  // dockerd's names, per scan
  // Per scan that a host's Refresh asked for: someone waits for the answer
  // (cove doctor), and a container just started is worth the ask even while
  // an earlier ask for it waits out a silent dockerd.
  static constexpr int64_t kRefreshAskBudgetMs = 1500;

  // From each HostHello. Registers on the first `wanted`.
  void Configure(bool wanted);
  void OnProcessEvent(int64_t now_ms);
  int64_t NextDueMs() const;
  // How a report is wanted: when due and changed; every time (the start of a
  // session); or every time after a fresh scan with kRefreshAskBudgetMs.
  enum class Want { kIfChanged, kAlways, kRefresh };
  // The report to send, if `want` calls for one. Containers are named
  // through `names`.
  std::optional<v1::Emulation> Take(int64_t now_ms, Want want, ContainerNames& names);
  // The architecture `pid` was built for if the last look saw it run
  // emulated, else "".
  std::string ArchOf(uint32_t pid) const;

 private:
  bool registered_ = false;
  BinfmtResult binfmt_;
  int64_t due_ms_ = 0;
  // While a container's process is not yet named (dockerd busy), looked at
  // again after this, doubling from kAfterEventMs up to kIdleMs.
  int64_t unnamed_rescan_ms_ = kAfterEventMs;
  std::string last_sent_;                    // serialized, to tell a change
  std::map<uint32_t, std::string> arch_of_;  // the last look's processes
};

}  // namespace cove::agent
