#include "guest/agent/reports/oom_watch.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "guest/agent/core/log.h"

namespace cove::agent {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The decimal number right after the first `key` in `text`; 0 when absent.
uint64_t NumberAfter(std::string_view text, std::string_view key) {
  size_t at = text.find(key);
  if (at == std::string_view::npos) return 0;
  uint64_t value = 0;
  for (size_t i = at + key.size(); i < text.size() && IsDigit(text[i]); ++i) {
    if (value > UINT64_MAX / 16) return 0;  // not a number the kernel prints
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  return value;
}

// `text` as a whole decimal number; false when it is empty, holds anything
// else, or is too large for one.
bool ParseDecimal(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (!IsDigit(c)) return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = value;
  return true;
}

// The value of `key=` in the comma-separated list `text`.
std::string FieldOf(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view item = text.substr(pos, end - pos);
    if (item.size() > key.size() && item.starts_with(key) && item[key.size()] == '=') {
      return std::string(item.substr(key.size() + 1));
    }
    pos = end + 1;
  }
  return "";
}

}  // namespace

std::optional<KmsgRecord> ParseKmsgRecord(std::string_view raw) {
  size_t semi = raw.find(';');
  if (semi == std::string_view::npos) return std::nullopt;
  std::string_view prefix = raw.substr(0, semi);
  size_t c1 = prefix.find(',');
  if (c1 == std::string_view::npos) return std::nullopt;
  size_t c2 = prefix.find(',', c1 + 1);
  if (c2 == std::string_view::npos) return std::nullopt;
  KmsgRecord record;
  // The first field is facility * 8 + level.
  uint64_t prio = 0;
  if (!ParseDecimal(prefix.substr(0, c1), &prio)) return std::nullopt;
  record.from_kernel = prio < 8;
  if (!ParseDecimal(prefix.substr(c1 + 1, c2 - c1 - 1), &record.seq)) return std::nullopt;
  for (size_t i = c2 + 1; i < prefix.size() && IsDigit(prefix[i]); ++i) {
    record.time_us = record.time_us * 10 + static_cast<uint64_t>(prefix[i] - '0');
  }
  std::string_view text = raw.substr(semi + 1);
  record.text = std::string(text.substr(0, text.find('\n')));
  return record;
}

std::optional<v1::OomKill> OomParser::Feed(const KmsgRecord& record) {
  if (!record.from_kernel) return std::nullopt;
  std::string_view text = record.text;
  if (text.find(" invoked oom-killer: ") != std::string_view::npos) {
    *this = OomParser();  // a new kill's report begins
    return std::nullopt;
  }
  if (text.starts_with("memory: usage ")) {
    usage_bytes_ = NumberAfter(text, "usage ") * 1024;
    limit_bytes_ = NumberAfter(text, "limit ") * 1024;
    return std::nullopt;
  }
  if (text.starts_with("oom-kill:")) {
    std::string_view fields = text.substr(9);
    constraint_ = FieldOf(fields, "constraint");
    oom_cgroup_ = FieldOf(fields, "oom_memcg");
    task_cgroup_ = FieldOf(fields, "task_memcg");
    // The field itself: "pid=" also ends "task_memcg=/x/ppid=" and the like.
    uint64_t pid = 0;
    task_pid_ = ParseDecimal(FieldOf(fields, "pid"), &pid) ? static_cast<uint32_t>(pid) : 0;
    return std::nullopt;
  }
  size_t killed = text.find("Killed process ");
  if (killed == std::string_view::npos) return std::nullopt;
  v1::OomKill kill;
  kill.set_seq(record.seq);
  kill.set_uptime_ms(record.time_us / 1000);
  std::string_view rest = text.substr(killed);
  kill.set_pid(static_cast<uint32_t>(NumberAfter(rest, "Killed process ")));
  size_t open = rest.find('(');
  size_t close = rest.rfind(") total-vm:");
  if (open != std::string_view::npos && close != std::string_view::npos && close > open) {
    kill.set_comm(std::string(rest.substr(open + 1, close - open - 1)));
  }
  kill.set_rss_bytes((NumberAfter(rest, "anon-rss:") + NumberAfter(rest, "file-rss:") +
                      NumberAfter(rest, "shmem-rss:")) *
                     1024);
  const bool same_task = task_pid_ != 0 && task_pid_ == kill.pid();
  kill.set_cgroup_limit(text.starts_with("Memory cgroup out of memory") ||
                        (same_task && constraint_ == "CONSTRAINT_MEMCG"));
  if (same_task) {
    kill.set_oom_cgroup(oom_cgroup_);
    kill.set_task_cgroup(task_cgroup_);
  }
  if (kill.cgroup_limit()) {
    kill.set_limit_bytes(limit_bytes_);
    kill.set_usage_bytes(usage_bytes_);
  }
  *this = OomParser();
  return kill;
}

void OomWatch::Open(const char* path) {
  fd_ = UniqueFd(open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd_.valid())
    Log("cannot read the kernel log %s (no OOM events): %s", path, std::strerror(errno));
}

std::vector<v1::OomKill> OomWatch::OnReadable() {
  std::vector<v1::OomKill> kills;
  if (!fd_.valid()) return kills;
  char buf[8192];
  while (true) {
    ssize_t n = read(fd_.get(), buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EPIPE)) continue;  // EPIPE: records were overwritten
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      Log("the kernel log: %s; no more OOM events", n < 0 ? std::strerror(errno) : "end of file");
      fd_.reset();
      break;
    }
    auto record = ParseKmsgRecord(std::string_view(buf, static_cast<size_t>(n)));
    if (!record) continue;
    auto kill = parser_.Feed(*record);
    if (!kill) continue;
    missed_.Told(kill->task_cgroup());
    if (enrich_) enrich_(*kill);
    Log("OOM kill: %s (pid %u), %s", kill->comm().c_str(), kill->pid(),
        kill->cgroup_limit() ? ("limit of " + kill->oom_cgroup()).c_str() : "the machine's memory");
    Keep(*kill);
    kills.push_back(std::move(*kill));
  }
  return kills;
}

std::vector<v1::OomKill> OomWatch::CheckCounters(uint64_t uptime_ms) {
  std::vector<v1::OomKill> kills;
  if (!fd_.valid()) return kills;  // not in a guest, or no kernel log to set them against
  for (const auto& [cgroup, count] : missed_.Check(ReadOomKillCounts())) {
    v1::OomKill kill;
    kill.set_uptime_ms(uptime_ms);
    kill.set_unlogged_count(static_cast<uint32_t>(count));
    kill.set_task_cgroup(cgroup);
    kill.set_oom_cgroup(cgroup);
    kill.set_limit_bytes(ReadMemoryMax(cgroup));
    kill.set_cgroup_limit(kill.limit_bytes() > 0);
    if (enrich_) enrich_(kill);
    Log("OOM kills the kernel log did not tell: %llu in %s", static_cast<unsigned long long>(count),
        cgroup.c_str());
    Keep(kill);
    kills.push_back(std::move(kill));
  }
  return kills;
}

void OomWatch::Keep(const v1::OomKill& kill) {
  history_.push_back(kill);
  if (history_.size() > kKeep) history_.pop_front();
}

std::vector<v1::OomKill> OomWatch::History() const {
  std::vector<v1::OomKill> out(history_.begin(), history_.end());
  for (v1::OomKill& kill : out) kill.set_replay(true);
  return out;
}

}  // namespace cove::agent
