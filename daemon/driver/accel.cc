#include "daemon/driver/accel.h"

#include <google/protobuf/util/time_util.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"

namespace cove::daemon {

cove::v1::AccelVerdict ToProto(const AccelVerdict& verdict) {
  cove::v1::AccelVerdict out;
  out.set_accel(verdict.accel);
  out.set_usable(verdict.usable);
  out.set_reason(verdict.reason);
  out.set_checked_by(verdict.checked_by);
  out.set_cpu(verdict.cpu);
  *out.mutable_checked_at() =
      google::protobuf::util::TimeUtil::TimeTToTimestamp(verdict.checked_at_unix);
  return out;
}

const AccelVerdict* AccelReport::Find(cove::v1::Accel accel) const {
  for (const auto& v : verdicts) {
    if (v.accel == accel) return &v;
  }
  return nullptr;
}

void AccelReport::RecordBootFailure(cove::v1::Accel accel, const std::string& reason) {
  for (auto& v : verdicts) {
    if (v.accel != accel) continue;
    v.usable = false;
    v.reason = reason;
    v.checked_by = "boot";
    v.checked_at_unix = ::time(nullptr);
  }
  ChooseAuto();
}

void AccelReport::ChooseAuto() {
  auto_accel = cove::v1::ACCEL_TCG;
  for (const auto& v : verdicts) {
    if (v.usable) {
      auto_accel = v.accel;
      break;
    }
  }
}

absl::Status SaveAccelReport(const AccelReport& report, const std::string& cache_file) {
  nlohmann::json j = {
      {"key", report.key}, {"auto", report.auto_accel}, {"verdicts", nlohmann::json::array()}};
  for (const auto& v : report.verdicts) {
    j["verdicts"].push_back({{"accel", v.accel},
                             {"usable", v.usable},
                             {"reason", v.reason},
                             {"cpu", v.cpu},
                             {"checked_by", v.checked_by},
                             {"checked_at", v.checked_at_unix}});
  }
  return WriteFileAtomically(cache_file, j.dump(2) + "\n");
}

std::optional<AccelReport> LoadAccelReport(const std::string& cache_file, const std::string& key) {
  auto cached = ReadFile(cache_file);
  if (!cached.ok()) return std::nullopt;
  auto j = nlohmann::json::parse(*cached, nullptr, false);
  if (!j.is_object() || j.value("key", "") != key || !j.contains("verdicts")) return std::nullopt;
  AccelReport report;
  report.key = key;
  for (const auto& e : j["verdicts"]) {
    AccelVerdict v;
    v.accel = static_cast<cove::v1::Accel>(e.value("accel", 0));
    v.usable = e.value("usable", false);
    v.reason = e.value("reason", "");
    v.cpu = e.value("cpu", v.accel == cove::v1::ACCEL_TCG ? "" : "host");
    v.checked_by = e.value("checked_by", "probe");
    v.checked_at_unix = e.value("checked_at", int64_t{0});
    report.verdicts.push_back(std::move(v));
  }
  report.auto_accel = static_cast<cove::v1::Accel>(j.value("auto", 4));
  return report;
}

}  // namespace cove::daemon
