#include "guest/agent/reports/oom_counters.h"

#include <dirent.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "guest/agent/mounts/mount_types.h"

namespace cove::agent {
namespace {

// "/a/b/c" -> "/a", "/a/b", "/a/b/c".
std::vector<std::string> SelfAndAncestors(const std::string& cgroup) {
  std::vector<std::string> out;
  for (size_t pos = 1; pos <= cgroup.size(); ++pos) {
    if (pos == cgroup.size() || cgroup[pos] == '/') out.push_back(cgroup.substr(0, pos));
  }
  return out;
}

size_t Depth(const std::string& cgroup) {
  size_t n = 0;
  for (char c : cgroup) n += c == '/';
  return n;
}

std::vector<std::string> SubDirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    out.push_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

// The number after "oom_kill " in a memory.events file's text.
bool ParseOomKill(std::string_view text, uint64_t* out) {
  constexpr std::string_view kKey = "oom_kill ";
  size_t at = 0;
  while ((at = text.find(kKey, at)) != std::string_view::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      *out = std::strtoull(std::string(text.substr(at + kKey.size(), 20)).c_str(), nullptr, 10);
      return true;
    }
    at += kKey.size();
  }
  return false;
}

}  // namespace

void MissedKills::Told(const std::string& task_cgroup) {
  if (task_cgroup.empty()) {
    unplaced_++;  // the log's summary line was rate limited away
    return;
  }
  for (const std::string& cgroup : SelfAndAncestors(task_cgroup)) {
    auto it = entries_.find(cgroup);
    if (it != entries_.end()) it->second.told++;
  }
}

std::map<std::string, uint64_t> MissedKills::Check(const std::map<std::string, uint64_t>& counts) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = counts.count(it->first) ? std::next(it) : entries_.erase(it);
  }
  // Deepest first: a kill in /docker/ID is counted by /docker too, and is
  // told (or missed) once, by the deepest.
  std::vector<std::string> order;
  for (const auto& [cgroup, count] : counts) order.push_back(cgroup);
  std::stable_sort(order.begin(), order.end(),
                   [](const std::string& a, const std::string& b) { return Depth(a) > Depth(b); });
  std::map<std::string, uint64_t> missed;
  // Lines without a cgroup from this interval and the one before: they may
  // clear a suspicion of the last check or of this one (next time).
  uint64_t unplaced = unplaced_carried_ + unplaced_;
  for (const std::string& cgroup : order) {
    const uint64_t count = counts.at(cgroup);
    auto [it, fresh] = entries_.try_emplace(cgroup);
    Entry& e = it->second;
    if (fresh && entries_.size() > kMaxCgroups) {
      entries_.erase(it);
      continue;
    }
    if (fresh || count < e.last) {
      // What it counted before it was watched (or before a cgroup of the
      // same name) is not ours to tell.
      e = Entry{count, 0, 0};
      continue;
    }
    const uint64_t rise = count - e.last;
    e.last = count;
    // Lines first clear the last check's suspicion, then this rise; lines
    // beyond both were for kills counted before the watch.
    uint64_t told = e.told;
    e.told = 0;
    const uint64_t cleared = std::min(e.suspected, told);
    const uint64_t lost = e.suspected - cleared;
    told -= cleared;
    e.suspected = rise - std::min(rise, told);
    if (lost == 0) continue;
    // The cgroups above suspected the same kills: settled here, by lines
    // without a cgroup or as missed, they are not theirs to tell.
    for (const std::string& up : SelfAndAncestors(cgroup)) {
      if (up == cgroup) continue;
      auto parent = entries_.find(up);
      if (parent != entries_.end()) parent->second.told += lost;
    }
    const uint64_t placed = std::min(lost, unplaced);
    unplaced -= placed;
    if (lost > placed) missed[cgroup] = lost - placed;
  }
  // Lines without a cgroup that cleared nothing for two checks were of
  // processes outside the watched cgroups (the root's).
  unplaced_carried_ = std::min(unplaced, unplaced_);
  unplaced_ = 0;
  return missed;
}

std::map<std::string, uint64_t> ReadOomKillCounts(const std::string& root) {
  std::map<std::string, uint64_t> counts;
  auto add = [&](const std::string& cgroup) {
    uint64_t n = 0;
    if (counts.size() < MissedKills::kMaxCgroups &&
        ParseOomKill(ReadBoundedFile(root + cgroup + "/memory.events", 4096), &n)) {
      counts[cgroup] = n;
    }
  };
  for (const std::string& top : SubDirs(root)) {
    add("/" + top);
    for (const std::string& child : SubDirs(root + "/" + top)) add("/" + top + "/" + child);
  }
  return counts;
}

uint64_t ReadMemoryMax(const std::string& cgroup, const std::string& root) {
  const std::string text = ReadBoundedFile(root + cgroup + "/memory.max", 64);
  if (text.empty() || text[0] < '0' || text[0] > '9') return 0;
  return std::strtoull(text.c_str(), nullptr, 10);
}

}  // namespace cove::agent
