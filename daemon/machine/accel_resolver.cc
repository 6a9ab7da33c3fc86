#include "daemon/machine/accel_resolver.h"

#include "daemon/driver/qemu/qemu_argv.h"

namespace cove::daemon {

AccelResolver::~AccelResolver() {
  for (auto& t : threads_) t.join();
}

void AccelResolver::Kick(const std::string& arch) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[arch];
    if (e.running || e.result.has_value()) return;
    e.running = true;
  }
  threads_.emplace_back([this, arch]() {
    auto report = qemu::ProbeAccelerators(qemu::QemuBinaryName(arch), arch,
                                          cache_dir_ + "/accel-" + arch + ".json", cache_dir_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      Entry& e = entries_[arch];
      e.running = false;
      e.result = report;
    }
    loop_.Post([this, arch]() {
      std::vector<Callback> waiting;
      absl::StatusOr<qemu::AccelReport> result;
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
  std::optional<absl::StatusOr<qemu::AccelReport>> ready;
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

std::optional<absl::StatusOr<qemu::AccelReport>> AccelResolver::Report(const std::string& arch) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(arch);
  if (it == entries_.end()) return std::nullopt;
  return it->second.result;
}

}  // namespace cove::daemon
