// Decides what ACCEL_AUTO means, once per guest architecture, by probing in
// a background thread (see daemon/driver/qemu/accel_probe.h). Probes start
// when coved starts, so a `cove start` rarely waits for one.
//
// Threading: Resolve() and Kick() on the loop thread; callbacks are posted
// back to it. Report() from any thread.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "daemon/driver/qemu/accel_probe.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class AccelResolver {
 public:
  using Callback = std::function<void(absl::StatusOr<qemu::AccelReport>)>;

  AccelResolver(EventLoop& loop, std::string cache_dir)
      : loop_(loop), cache_dir_(std::move(cache_dir)) {}
  ~AccelResolver();

  // Starts probing for `arch` if not done or under way.
  void Kick(const std::string& arch);
  // Calls `cb` on the loop with the report for `arch`, probing first if
  // needed.
  void Resolve(const std::string& arch, Callback cb);
  // The report for `arch` if the probe has finished.
  std::optional<absl::StatusOr<qemu::AccelReport>> Report(const std::string& arch);

 private:
  struct Entry {
    bool running = false;
    std::optional<absl::StatusOr<qemu::AccelReport>> result;
    std::vector<Callback> waiting;  // loop thread only
  };

  EventLoop& loop_;
  const std::string cache_dir_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;  // loop thread only
};

}  // namespace cove::daemon
