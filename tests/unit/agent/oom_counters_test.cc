#include "guest/agent/reports/oom_counters.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

namespace cove::agent {
namespace {

const std::string kCtr = "/docker/" + std::string(64, 'a');

TEST_CASE("kills the log told are not told again from the counters", "[agent][oom]") {
  MissedKills missed;
  CHECK(missed.Check({{"/docker", 0}, {kCtr, 0}}).empty());  // first sight: the baseline
  // The counter rises just before the log line: one check sees the rise
  // alone, the next sees the line too.
  CHECK(missed.Check({{"/docker", 1}, {kCtr, 1}}).empty());
  missed.Told(kCtr);
  CHECK(missed.Check({{"/docker", 1}, {kCtr, 1}}).empty());
  missed.Told(kCtr);
  CHECK(missed.Check({{"/docker", 2}, {kCtr, 2}}).empty());
  CHECK(missed.Check({{"/docker", 2}, {kCtr, 2}}).empty());
}

TEST_CASE("kills the log lost are told once, by the container's cgroup", "[agent][oom]") {
  MissedKills missed;
  missed.Check({{"/docker", 0}, {kCtr, 0}});
  CHECK(missed.Check({{"/docker", 3}, {kCtr, 3}}).empty());  // maybe the lines are on their way
  missed.Told(kCtr);                                         // one of three came
  auto got = missed.Check({{"/docker", 3}, {kCtr, 3}});
  CHECK(got == std::map<std::string, uint64_t>{{kCtr, 2}});  // not /docker as well
  CHECK(missed.Check({{"/docker", 3}, {kCtr, 3}}).empty());
  CHECK(missed.Check({{"/docker", 3}, {kCtr, 3}}).empty());
}

TEST_CASE("in a burst, each check's new rise is a new suspicion, not a miss", "[agent][oom]") {
  MissedKills missed;
  missed.Check({{"/docker", 0}, {kCtr, 0}});
  for (uint64_t n = 1; n <= 5; ++n) {
    // Kill n is counted before this check; its line comes after it, just
    // before kill n + 1 is counted.
    CHECK(missed.Check({{"/docker", n}, {kCtr, n}}).empty());
    missed.Told(kCtr);
  }
  CHECK(missed.Check({{"/docker", 5}, {kCtr, 5}}).empty());
}

TEST_CASE("kills told without their cgroup match a counter's rise", "[agent][oom]") {
  MissedKills missed;
  missed.Check({{"/docker", 0}, {kCtr, 0}});
  missed.Told("");  // the summary line was rate limited away
  missed.Check({{"/docker", 1}, {kCtr, 1}});
  CHECK(missed.Check({{"/docker", 1}, {kCtr, 1}}).empty());
  // A cgroup gone and made again under its name starts over.
  missed.Check({{"/default", 0}, {"/default/web", 5}});
  CHECK(missed.Check({{"/default", 0}, {"/default/web", 0}}).empty());
  CHECK(missed.Check({{"/default", 0}, {"/default/web", 0}}).empty());
}

TEST_CASE("counters and limits are read from the cgroup tree", "[agent][oom]") {
  char tmpl[] = "/tmp/cove-cgroup-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string root = tmpl;
  mkdir((root + "/docker").c_str(), 0755);
  mkdir((root + "/docker/abc").c_str(), 0755);
  mkdir((root + "/empty").c_str(), 0755);
  std::ofstream(root + "/docker/memory.events") << "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n";
  std::ofstream(root + "/docker/abc/memory.events")
      << "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n";
  std::ofstream(root + "/docker/abc/memory.max") << "67108864\n";
  std::ofstream(root + "/docker/memory.max") << "max\n";
  auto counts = ReadOomKillCounts(root);
  CHECK(counts == std::map<std::string, uint64_t>{{"/docker", 2}, {"/docker/abc", 1}});
  CHECK(ReadMemoryMax("/docker/abc", root) == 67108864);
  CHECK(ReadMemoryMax("/docker", root) == 0);
  std::system(("rm -rf " + root).c_str());
}

}  // namespace
}  // namespace cove::agent
