#include "daemon/machine/accel_resolver.h"

#include "common/api_names.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

AccelResolver::~AccelResolver() {
  for (auto& t : threads_) t.join();
}

void AccelResolver::Kick(const std::string& arch) {
  bool reprobe = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[arch];
    if (e.running || e.result.has_value()) return;
    e.running = true;
    reprobe = e.reprobe;
    e.reprobe = false;
    // Probes that are over (their result is in) are joined here, so a
    // coved that reprobes often does not keep their threads.
    bool any_running = false;
    for (const auto& [a, other] : entries_)
      any_running = any_running || (other.running && a != arch);
    if (!any_running) {
      for (auto& t : threads_) t.join();
      threads_.clear();
    }
  }
  threads_.emplace_back([this, arch, reprobe]() {
    auto report = driver_.ProbeAccelerators(arch, CacheFile(arch), cache_dir_, reprobe);
    {
      std::lock_guard<std::mutex> lock(mu_);
      Entry& e = entries_[arch];
      e.running = false;
      e.result = report;
    }
    loop_.Post([this, arch]() {
      std::vector<Callback> waiting;
      absl::StatusOr<AccelReport> result;
      {
        std::lock_guard<std::mutex> lock(mu_);
        Entry& e = entries_[arch];
        waiting.swap(e.waiting);
        result = *e.result;
      }
      for (auto& cb : waiting) cb(result);
    });
  });
}

void AccelResolver::Resolve(const std::string& arch, Callback cb) {
  std::optional<absl::StatusOr<AccelReport>> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[arch];
    if (e.result.has_value()) {
      ready = e.result;
    } else {
      e.waiting.push_back(std::move(cb));
    }
  }
  if (ready.has_value()) {
    cb(*ready);
    return;
  }
  Kick(arch);
}

void AccelResolver::Reprobe(const std::string& arch, Callback cb) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[arch];
    e.waiting.push_back(std::move(cb));
    if (e.running) return;
    e.result.reset();
    e.reprobe = true;
  }
  Kick(arch);
}

std::optional<absl::StatusOr<AccelReport>> AccelResolver::Report(const std::string& arch) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(arch);
  if (it == entries_.end()) return std::nullopt;
  return it->second.result;
}

void AccelResolver::RecordBootFailure(const std::string& arch, cove::v1::Accel accel,
                                      const std::string& reason) {
  AccelReport report;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[arch];
    if (!e.result.has_value() || !e.result->ok()) return;
    (*e.result)->RecordBootFailure(accel, reason);
    report = **e.result;
  }
  spdlog::warn("accel: {} is unusable for {} guests here: {}; auto means {} from now on",
               AccelName(accel), arch, reason, AccelName(report.auto_accel));
  // An fsynced write: off the loop.
  loop_.Offload(
      [report, file = CacheFile(arch)]() {
        if (auto st = SaveAccelReport(report, file); !st.ok()) {
          spdlog::warn("cannot cache the accelerator verdicts: {}", std::string(st.message()));
        }
      },
      []() {});
}

}  // namespace cove::daemon
