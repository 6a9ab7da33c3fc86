#include "guest/agent/reports/oom_watch.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "guest/agent/core/sysinfo.h"
#include "guest/agent/runtime/containers.h"

namespace cove::agent {
namespace {

// What a 6.1 kernel logs for `docker run -m 64m` filling a tmpfs (trimmed:
// the call trace and Mem-Info lines in between are fed too, and ignored).
const char* kCgroupKill[] = {
    "4,900,81234567,-;dd invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
    "oom_score_adj=0\n",
    "4,901,81234600,-;CPU: 1 PID: 812 Comm: dd Not tainted 6.1.0-28-cloud-amd64 #1\n",
    "6,902,81234700,-;memory: usage 65536kB, limit 65536kB, failcnt 52\n",
    "6,903,81234701,-;swap: usage 0kB, limit 0kB, failcnt 0\n",
    "6,904,81234800,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=0123abcd,"
    "mems_allowed=0,oom_memcg=/docker/"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,task_memcg=/docker/"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,task=dd,pid=812,uid=0\n",
    "3,905,81234900,-;Memory cgroup out of memory: Killed process 812 (dd) total-vm:4404kB, "
    "anon-rss:1024kB, file-rss:512kB, shmem-rss:62464kB, UID:0 pgtables:52kB oom_score_adj:0\n"
    " SUBSYSTEM=memory\n",
};

std::optional<v1::OomKill> FeedAll(OomParser& parser, const char* const* records, size_t n) {
  std::optional<v1::OomKill> kill;
  for (size_t i = 0; i < n; ++i) {
    auto record = ParseKmsgRecord(records[i]);
    REQUIRE(record);
    if (auto k = parser.Feed(*record)) kill = k;
  }
  return kill;
}

}  // namespace

TEST_CASE("a kmsg record gives its sequence, time and text", "[agent][oom]") {
  auto r = ParseKmsgRecord("6,1234,5678901,-;hello world\n KEY=value\n");
  REQUIRE(r);
  CHECK(r->seq == 1234);
  CHECK(r->time_us == 5678901);
  CHECK(r->text == "hello world");
  CHECK(r->from_kernel);
  CHECK_FALSE(ParseKmsgRecord("14,1,1,-;from a guest program")->from_kernel);  // user.info
  CHECK_FALSE(ParseKmsgRecord("no prefix"));
  CHECK_FALSE(ParseKmsgRecord("6,x,1,-;text"));
}

TEST_CASE("a cgroup limit kill has its cgroup, limit and process", "[agent][oom]") {
  OomParser parser;
  auto kill = FeedAll(parser, kCgroupKill, std::size(kCgroupKill));
  REQUIRE(kill);
  CHECK(kill->seq() == 905);
  CHECK(kill->uptime_ms() == 81234);
  CHECK(kill->pid() == 812);
  CHECK(kill->comm() == "dd");
  CHECK(kill->rss_bytes() == (1024 + 512 + 62464) * 1024ull);
  CHECK(kill->cgroup_limit());
  CHECK(kill->limit_bytes() == 64ull * 1024 * 1024);
  CHECK(kill->usage_bytes() == 64ull * 1024 * 1024);
  CHECK(kill->task_cgroup() ==
        "/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
}

TEST_CASE("a machine-wide kill has no cgroup limit", "[agent][oom]") {
  const char* records[] = {
      "4,10,5000000,-;tail invoked oom-killer: gfp_mask=0x140dca, order=0, oom_score_adj=0\n",
      "6,11,5000100,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
      "global_oom,task_memcg=/,task=tail,pid=77,uid=0\n",
      "3,12,5000200,-;Out of memory: Killed process 77 (tail) total-vm:900000kB, "
      "anon-rss:880000kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:1800kB oom_score_adj:0\n",
  };
  OomParser parser;
  auto kill = FeedAll(parser, records, std::size(records));
  REQUIRE(kill);
  CHECK(kill->comm() == "tail");
  CHECK(kill->pid() == 77);
  CHECK_FALSE(kill->cgroup_limit());
  CHECK(kill->limit_bytes() == 0);
  CHECK(kill->task_cgroup() == "/");
}

TEST_CASE("a kill whose report was rate limited still counts", "[agent][oom]") {
  // Only the last line: the kernel rate limits the report, not that line.
  OomParser parser;
  auto kill = parser.Feed(*ParseKmsgRecord(
      "3,7,1000,-;Memory cgroup out of memory: Killed process 9 (my prog) total-vm:1kB, "
      "anon-rss:8kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0\n"));
  REQUIRE(kill);
  CHECK(kill->comm() == "my prog");
  CHECK(kill->cgroup_limit());
  CHECK(kill->task_cgroup().empty());  // the summary line of another pid is not used
}

TEST_CASE("what a guest program writes to the kernel log is no kill", "[agent][oom]") {
  OomParser parser;
  CHECK_FALSE(parser.Feed(*ParseKmsgRecord(
      "12,8,1000,-;Memory cgroup out of memory: Killed process 9 (fake) total-vm:1kB, "
      "anon-rss:8kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0\n")));
}

TEST_CASE("cgroups name their containers", "[agent][oom]") {
  const std::string id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  auto docker = ContainerOfCgroup("/docker/" + id);
  REQUIRE(docker);
  CHECK(docker->id == id);
  CHECK(docker->name.empty());
  auto systemd = ContainerOfCgroup("/system.slice/docker-" + id + ".scope");
  REQUIRE(systemd);
  CHECK(systemd->id == id);
  auto ctr = ContainerOfCgroup("/default/web");
  REQUIRE(ctr);
  CHECK(ctr->name == "web");
  CHECK_FALSE(ContainerOfCgroup("/"));
  CHECK_FALSE(ContainerOfCgroup("/system.slice/cron.service"));
  CHECK_FALSE(ContainerOfCgroup("/docker/short"));
  CHECK(DockerNameOf(R"({"Id":"x","Name":"/hog","State":{}})") == "hog");
  CHECK(DockerNameOf("{}").empty());
}

// A stand-in dockerd on a unix socket: counts connections, and answers each
// with `answer` (or, when empty, holds it open without a word).
class FakeDockerd {
 public:
  explicit FakeDockerd(std::string answer) : answer_(std::move(answer)) {
    char tmpl[] = "/tmp/cove-dockerd-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/docker.sock";
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(listen(fd_, 8) == 0);
    thread_ = std::thread([this] {
      while (true) {
        int conn = accept(fd_, nullptr, nullptr);
        if (conn < 0) return;  // closed by the destructor
        connections_++;
        char buf[512];
        (void)!read(conn, buf, sizeof(buf));
        if (answer_.empty()) {
          held_.push_back(conn);
          continue;
        }
        (void)!write(conn, answer_.data(), answer_.size());
        close(conn);
      }
    });
  }
  ~FakeDockerd() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    for (int c : held_) close(c);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }
  int connections() const { return connections_; }

 private:
  std::string answer_, dir_, path_;
  int fd_ = -1;
  std::vector<int> held_;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST_CASE("a silent dockerd holds a name lookup for its timeout, then only after a growing wait",
          "[agent][oom]") {
  const std::string cgroup = "/docker/" + std::string(64, 'a');
  FakeDockerd dockerd("");
  int64_t now = 1000000;
  ContainerNames names(dockerd.path(), [&now] { return now; });
  const int ask_ms = ContainerNames::kAskTimeoutMs;
  const int64_t start = ClockMs(CLOCK_MONOTONIC);
  auto ref = names.Resolve(cgroup, ask_ms);
  const int64_t took = ClockMs(CLOCK_MONOTONIC) - start;
  REQUIRE(ref);
  CHECK(ref->name.empty());
  CHECK(took >= ask_ms - 10);
  CHECK(took < 5000);
  // Not asked again within the first wait: no new connection, no wait.
  auto again = names.Resolve(cgroup, ask_ms);
  REQUIRE(again);
  CHECK(again->name.empty());
  CHECK(dockerd.connections() == 1);
  // Asked again after it, then only after twice as long: dockerd may be
  // busy starting that very container, and its name is worth a second ask.
  now += ContainerNames::kFirstBackoffMs;
  names.Resolve(cgroup, ask_ms);
  CHECK(dockerd.connections() == 2);
  now += ContainerNames::kFirstBackoffMs;
  names.Resolve(cgroup, ask_ms);
  CHECK(dockerd.connections() == 2);
  now += ContainerNames::kFirstBackoffMs;
  names.Resolve(cgroup, ask_ms);
  CHECK(dockerd.connections() == 3);
  // A kill's ask does not wait out a silent dockerd.
  names.Resolve(cgroup, ask_ms, ContainerNames::Wait::kSkipIfSilent);
  CHECK(dockerd.connections() == 4);
  // A timeout of 0 never asks.
  names.Resolve("/docker/" + std::string(64, 'b'), 0);
  CHECK(dockerd.connections() == 4);
  // A short ask (a scan's budget running out) is tried again next time.
  const std::string other = "/docker/" + std::string(64, 'd');
  names.Resolve(other, 20);
  names.Resolve(other, 20);
  CHECK(dockerd.connections() == 6);
}

TEST_CASE("an id dockerd answers for without a name is left alone for kRetryAfterMs",
          "[agent][oom]") {
  FakeDockerd dockerd(
      "HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n"
      R"({"message":"No such container"})");
  int64_t now = 1000000;
  ContainerNames names(dockerd.path(), [&now] { return now; });
  const std::string cgroup = "/docker/" + std::string(64, 'e');
  CHECK(names.Resolve(cgroup)->name.empty());
  now += ContainerNames::kRetryAfterMs - 1;
  CHECK(names.Resolve(cgroup)->name.empty());
  // Not even for a kill: dockerd said it has no such container.
  CHECK(names.Resolve(cgroup, ContainerNames::kAskTimeoutMs, ContainerNames::Wait::kSkipIfSilent)
            ->name.empty());
  CHECK(dockerd.connections() == 1);
  now += 1;
  names.Resolve(cgroup);
  CHECK(dockerd.connections() == 2);
}

TEST_CASE("dockerd's answer names the container, and the name is kept", "[agent][oom]") {
  FakeDockerd dockerd(
      "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
      R"({"Id":"x","Name":"/hog"})");
  ContainerNames names(dockerd.path());
  const std::string cgroup = "/docker/" + std::string(64, 'c');
  auto ref = names.Resolve(cgroup);
  REQUIRE(ref);
  CHECK(ref->name == "hog");
  CHECK(names.Resolve(cgroup)->name == "hog");
  CHECK(dockerd.connections() == 1);
}

TEST_CASE("memory pressure is parsed", "[agent][sysinfo]") {
  Pressure p = ParsePressure(
      "some avg10=12.34 avg60=1.00 avg300=0.10 total=123\n"
      "full avg10=5.60 avg60=0.00 avg300=0.00 total=45\n");
  CHECK(p.available);
  CHECK(p.some_avg10_x100 == 1234);
  CHECK(p.full_avg10_x100 == 560);
  CHECK_FALSE(ParsePressure("").available);
}

}  // namespace cove::agent
