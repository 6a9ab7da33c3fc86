// Decides what ACCEL_AUTO means, once per guest architecture, by asking the
// driver to probe (Driver::ProbeAccelerators) in a background thread. Probes start
// when coved starts, so a `cove start` rarely waits for one. A machine whose
// real boot shows that an accelerator does not work here says so with
// RecordBootFailure: later starts go straight to the next one.
//
// Threading: Resolve(), Kick(), Reprobe() and RecordBootFailure() on the loop
// thread; callbacks are posted back to it. Report() from any thread.
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
#include "daemon/driver/driver.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class AccelResolver {
 public:
  using Callback = std::function<void(absl::StatusOr<AccelReport>)>;

  // `cache_dir` holds the verdicts (accel-ARCH.json) and the probe program.
  AccelResolver(EventLoop& loop, const Driver& driver, std::string cache_dir)
      : loop_(loop), driver_(driver), cache_dir_(std::move(cache_dir)) {}
  ~AccelResolver();

  // Starts probing for `arch` if not done or under way.
  void Kick(const std::string& arch);
  // Calls `cb` on the loop with the report for `arch`, probing first if
  // needed.
  void Resolve(const std::string& arch, Callback cb);
  // Forgets the verdicts for `arch` (cached ones too) and probes again; `cb`
  // gets the new report. A probe under way is waited for, not repeated.
  void Reprobe(const std::string& arch, Callback cb);
  // The report for `arch` if the probe has finished.
  std::optional<absl::StatusOr<AccelReport>> Report(const std::string& arch);
  // A real boot under `accel` failed in a way that convicts the accelerator
  // (no sign of life, qemu's internal-error): it is unusable from now on,
  // until qemu or the host kernel changes or a reprobe. Cached at once.
  void RecordBootFailure(const std::string& arch, cove::v1::Accel accel, const std::string& reason);

 private:
  struct Entry {
    bool running = false;
    bool reprobe = false;  // the next probe ignores the cache
    std::optional<absl::StatusOr<AccelReport>> result;
    std::vector<Callback> waiting;  // loop thread only
  };
  std::string CacheFile(const std::string& arch) const {
    return cache_dir_ + "/accel-" + arch + ".json";
  }

  EventLoop& loop_;
  const Driver& driver_;  // outlives this; ProbeAccelerators is const, any thread
  const std::string cache_dir_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;  // loop thread only
};

}  // namespace cove::daemon
