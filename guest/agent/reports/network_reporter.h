// The guest's network to the host (GuestNetwork): at the start of a session,
// on a Refresh, and soon after the kernel says an address or a route changed
// (rtnetlink), when the facts did change.
#pragma once

#include <cstdint>
#include <optional>

#include "guest/agent/core/reporter.h"
#include "guest/agent/core/unique_fd.h"
#include "guest/agent/reports/network.h"

namespace cove::agent {

class NetworkReporter final : public Reporter {
 public:
  // Changes come in bursts (an interface going up brings its addresses and
  // routes): the report waits this long after the first of them.
  static constexpr int64_t kSettleMs = 200;

  // Subscribes to address and route changes (logged when unavailable: then
  // only sessions and Refreshes report).
  NetworkReporter();

  void Prepare(Host& host, PollSet& poll) override;
  void Tick(Host& host) override;
  void OnSessionStart(int64_t greeted_ms, Host& host) override;
  void OnRefresh(Host& host) override;

 private:
  void Drain();
  // Reads the facts and sends them when they changed (or `force`).
  void Report(Host& host, bool force);

  UniqueFd netlink_;
  std::optional<int64_t> due_ms_;  // a change came: report by then
  std::optional<NetworkFacts> sent_;
};

}  // namespace cove::agent
