// OOM kills, from the guest kernel's log. The agent reads /dev/kmsg (one
// record per read, from the start of this boot's buffer) and puts together
// the records of each kill:
//
//   memory: usage 65536kB, limit 65536kB, failcnt 52          (a cgroup's)
//   oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/docker/ID,
//            task_memcg=/docker/ID,task=dd,pid=812,uid=0
//   Memory cgroup out of memory: Killed process 812 (dd) total-vm:..kB,
//            anon-rss:..kB, file-rss:..kB, shmem-rss:..kB, UID:0 ...
//
// The last line ends a kill; the other two may be missing (the kernel rate
// limits the report but not that line), then the kill has what that line
// says. Loop thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/core/unique_fd.h"
#include "guest/agent/reports/oom_counters.h"

namespace cove::agent {

struct KmsgRecord {
  // The kernel's own (syslog facility 0); a guest process may write to
  // /dev/kmsg too, and what it writes is no kill.
  bool from_kernel = false;
  uint64_t seq = 0;
  uint64_t time_us = 0;  // since boot
  std::string text;      // the message, without the dictionary lines
};
// "6,1234,5678901,-;text\n KEY=value\n"; nullopt when malformed.
std::optional<KmsgRecord> ParseKmsgRecord(std::string_view raw);

// Puts kills together from records fed in order. Pure: tested on fixed text.
class OomParser {
 public:
  // The kill this record completes, if it completes one.
  std::optional<v1::OomKill> Feed(const KmsgRecord& record);

 private:
  uint64_t usage_bytes_ = 0;
  uint64_t limit_bytes_ = 0;
  std::string constraint_, oom_cgroup_, task_cgroup_;
  uint32_t task_pid_ = 0;
};

class OomWatch {
 public:
  // This boot's kills kept for a host that connects later.
  static constexpr size_t kKeep = 16;
  // Fills in what the kernel does not say: the container, emulation.
  using Enrich = std::function<void(v1::OomKill&)>;

  explicit OomWatch(Enrich enrich) : enrich_(std::move(enrich)) {}
  // Opens /dev/kmsg (or `path`); a failure is logged once and the watch
  // stays idle.
  void Open(const char* path = "/dev/kmsg");
  int fd() const { return fd_.get(); }
  // Reads every record there is; returns the kills completed.
  std::vector<v1::OomKill> OnReadable();
  // This boot's kills so far, marked replay, for a new session.
  std::vector<v1::OomKill> History() const;
  // Kills the log missed, from the cgroups' counters (oom_counters.h): one
  // per cgroup, with the count. Call it now and then (every heartbeat),
  // right after OnReadable, so the lines written so far are counted.
  std::vector<v1::OomKill> CheckCounters(uint64_t uptime_ms);

 private:
  void Keep(const v1::OomKill& kill);

  Enrich enrich_;
  UniqueFd fd_;
  OomParser parser_;
  MissedKills missed_;
  std::deque<v1::OomKill> history_;
};

}  // namespace cove::agent
