// Replaying host changes: a real inotify watch on a temporary directory
// (standing in for a cove mount) must see what guest watchers would see, and
// nothing for a change that is refused or an echo. Echo suppression is
// tested as the pure time-window logic, and with real fanotify as root.
#include "guest/agent/mounts/host_changes.h"

#include <poll.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace cove::agent {
namespace {

struct Event {
  int wd;
  uint32_t mask;
  std::string name;
  bool operator==(const Event&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Event& e) {
  return os << "{wd " << e.wd << ", mask 0x" << std::hex << e.mask << std::dec << ", '" << e.name
            << "'}";
}

// What the replay queued; its system calls queue events before they return.
std::vector<Event> ReadEvents(int fd) {
  std::vector<Event> events;
  alignas(inotify_event) char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(p);
      events.push_back({e->wd, e->mask, e->len ? std::string(e->name) : ""});
      p += sizeof(inotify_event) + e->len;
    }
  }
  return events;
}

struct TempMount {
  TempMount() {
    char tmpl[] = "/tmp/cove-replay-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    char resolved[PATH_MAX];
    REQUIRE(realpath(tmpl, resolved) != nullptr);
    mount.tag = "cove0";
    mount.path = resolved;
  }
  ~TempMount() { std::system(("rm -rf '" + mount.path + "'").c_str()); }
  CoveMount mount;
};

struct timespec MtimeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mtim;
}

constexpr uint32_t kWatched = IN_ATTRIB | IN_OPEN | IN_CLOSE_WRITE | IN_MODIFY;

}  // namespace

TEST_CASE("only relative paths inside the mount are accepted", "[agent][replay]") {
  for (const char* ok : {"f", "a/b/c", "with space", "..dots", "a/.hidden"}) {
    CHECK(IsSafeRelativePath(ok));
  }
  for (const char* bad : {"", "/etc/passwd", "..", "../x", "a/../b", "a/..", "a//b", "a/", "./a"}) {
    INFO(bad);
    CHECK_FALSE(IsSafeRelativePath(bad));
  }
  CHECK_FALSE(IsSafeRelativePath(std::string("a\0b", 3)));
  CHECK_FALSE(IsSafeRelativePath(std::string(PATH_MAX, 'a')));
}

TEST_CASE("a written file gets IN_ATTRIB, IN_OPEN and IN_CLOSE_WRITE and keeps its content",
          "[agent][replay]") {
  TempMount t;
  const std::string file = t.mount.path + "/sub/f";
  REQUIRE(mkdir((t.mount.path + "/sub").c_str(), 0755) == 0);
  std::ofstream(file) << "content";
  const struct timespec before = MtimeOf(file);
  const int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  const int wd = inotify_add_watch(in, (t.mount.path + "/sub").c_str(), kWatched);
  REQUIRE(wd >= 0);

  EchoFilter echo;
  CHECK(ReplayChange(t.mount, "sub/f", ChangeKind::kWritten, echo, 0) == ReplayResult::kReplayed);
  CHECK(ReadEvents(in) ==
        std::vector<Event>{{wd, IN_ATTRIB, "f"}, {wd, IN_OPEN, "f"}, {wd, IN_CLOSE_WRITE, "f"}});
  std::ifstream in_file(file);
  std::string content;
  in_file >> content;
  CHECK(content == "content");
  const struct timespec after = MtimeOf(file);
  CHECK((after.tv_sec == before.tv_sec && after.tv_nsec == before.tv_nsec));
  in_file.close();
  ReadEvents(in);  // the test's own read

  SECTION("the host reporting the replay's own touch back is an echo") {
    CHECK(ReplayChange(t.mount, "sub/f", ChangeKind::kWritten, echo, 100) == ReplayResult::kEcho);
    CHECK(ReadEvents(in).empty());
    // A real change since (other size) is replayed, echo window or not.
    std::ofstream(file) << "changed on the host";
    ReadEvents(in);
    CHECK(ReplayChange(t.mount, "sub/f", ChangeKind::kWritten, echo, 200) ==
          ReplayResult::kReplayed);
    CHECK(ReadEvents(in).size() == 3);
  }
  SECTION("a directory gets IN_ATTRIB only; a vanished file nothing") {
    REQUIRE(mkdir((t.mount.path + "/sub/d").c_str(), 0755) == 0);
    ReadEvents(in);
    CHECK(ReplayChange(t.mount, "sub/d", ChangeKind::kWritten, echo, 0) == ReplayResult::kReplayed);
    CHECK(ReadEvents(in) == std::vector<Event>{{wd, IN_ATTRIB | IN_ISDIR, "d"}});
    CHECK(ReplayChange(t.mount, "sub/gone", ChangeKind::kWritten, echo, 0) ==
          ReplayResult::kMissing);
    CHECK(ReadEvents(in).empty());
  }
  close(in);
}

TEST_CASE("the mount's root itself can be replayed (bursts summarized there)", "[agent][replay]") {
  TempMount t;
  const int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  const int wd = inotify_add_watch(in, t.mount.path.c_str(), kWatched);
  REQUIRE(wd >= 0);
  EchoFilter echo;
  CHECK(ReplayChange(t.mount, "", ChangeKind::kWritten, echo, 0) == ReplayResult::kReplayed);
  CHECK(ReadEvents(in) == std::vector<Event>{{wd, IN_ATTRIB | IN_ISDIR, ""}});
  CHECK(ReplayChange(t.mount, "", ChangeKind::kRemoved, echo, 0) == ReplayResult::kRejected);
  close(in);
}

TEST_CASE("a removed entry gets IN_ATTRIB on its directory", "[agent][replay]") {
  TempMount t;
  REQUIRE(mkdir((t.mount.path + "/d").c_str(), 0755) == 0);
  const int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  const int root_wd = inotify_add_watch(in, t.mount.path.c_str(), kWatched);
  const int d_wd = inotify_add_watch(in, (t.mount.path + "/d").c_str(), kWatched);
  REQUIRE((root_wd >= 0 && d_wd >= 0));
  EchoFilter echo;

  CHECK(ReplayChange(t.mount, "d/gone", ChangeKind::kRemoved, echo, 0) == ReplayResult::kReplayed);
  // The directory's own watch and its parent's, in either order.
  std::vector<Event> events = ReadEvents(in);
  std::sort(events.begin(), events.end(),
            [](const Event& a, const Event& b) { return a.wd < b.wd; });
  std::vector<Event> expected = {{d_wd, IN_ATTRIB | IN_ISDIR, ""},
                                 {root_wd, IN_ATTRIB | IN_ISDIR, "d"}};
  std::sort(expected.begin(), expected.end(),
            [](const Event& a, const Event& b) { return a.wd < b.wd; });
  CHECK(events == expected);
  // Directly in the mount's root: the root itself.
  CHECK(ReplayChange(t.mount, "gone", ChangeKind::kRemoved, echo, 0) == ReplayResult::kReplayed);
  CHECK(ReadEvents(in) == std::vector<Event>{{root_wd, IN_ATTRIB | IN_ISDIR, ""}});
  close(in);
}

TEST_CASE("refused paths touch nothing", "[agent][replay]") {
  // outer/ holds the mount m/ and a file a path escaping m/ would reach.
  TempMount outer;
  CoveMount m = outer.mount;
  m.path += "/m";
  REQUIRE(mkdir(m.path.c_str(), 0755) == 0);
  std::ofstream(outer.mount.path + "/victim") << "x";
  REQUIRE(symlink(outer.mount.path.c_str(), (m.path + "/abs").c_str()) == 0);
  REQUIRE(symlink("..", (m.path + "/rel").c_str()) == 0);
  const int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  REQUIRE(inotify_add_watch(in, outer.mount.path.c_str(), kWatched) >= 0);
  REQUIRE(inotify_add_watch(in, m.path.c_str(), kWatched) >= 0);
  ReadEvents(in);
  EchoFilter echo;
  for (const std::string& bad :
       std::vector<std::string>{"../victim", outer.mount.path + "/victim", "a/../../victim"}) {
    INFO(bad);
    CHECK(ReplayChange(m, bad, ChangeKind::kWritten, echo, 0) == ReplayResult::kRejected);
    CHECK(ReplayChange(m, bad, ChangeKind::kRemoved, echo, 0) == ReplayResult::kRejected);
  }
  // "" is the mount's root: written is fine (see above), removed is not.
  CHECK(ReplayChange(m, "", ChangeKind::kRemoved, echo, 0) == ReplayResult::kRejected);
  // Symlinks out of the mount are not followed out of it (and a symlink is
  // no directory to touch for a removal).
  for (const char* link : {"abs/victim", "rel/victim", "rel/m/x"}) {
    INFO(link);
    CHECK(ReplayChange(m, link, ChangeKind::kWritten, echo, 0) != ReplayResult::kReplayed);
    CHECK(ReplayChange(m, link, ChangeKind::kRemoved, echo, 0) != ReplayResult::kReplayed);
  }
  CHECK(ReadEvents(in).empty());
  close(in);
}

TEST_CASE("echoes of guest writes are recognised for two seconds", "[agent][replay]") {
  EchoFilter echo;
  const FileStamp stamp{1, 42, 1000, 5};
  echo.NoteGuestWrite("/m/d/f", 1, 42, 10000);
  CHECK(echo.IsWrittenEcho("/m/d/f", FileStamp{1, 99, 0, 0}, 10000));
  CHECK(echo.IsWrittenEcho("/m/d/f", stamp, 10000 + EchoFilter::kWindowMs));
  CHECK_FALSE(echo.IsWrittenEcho("/m/d/f", FileStamp{1, 99, 0, 0}, 10001 + EchoFilter::kWindowMs));
  // Renamed into place: the same inode under another name.
  CHECK(echo.IsWrittenEcho("/m/d/g", stamp, 11000));
  CHECK_FALSE(echo.IsWrittenEcho("/m/d/g", FileStamp{2, 42, 0, 0}, 11000));  // other device
  // The temporary name going away, in a directory the guest just wrote to.
  CHECK(echo.IsRemovedEcho("/m/d/tmp123", 11000));
  CHECK_FALSE(echo.IsRemovedEcho("/m/other/x", 11000));
  CHECK_FALSE(echo.IsRemovedEcho("/m/d/tmp123", 12001));

  SECTION("the replay's own touches, until the file changes") {
    echo.NoteReplay("/m/e/f", stamp, 20000);
    CHECK(echo.IsWrittenEcho("/m/e/f", stamp, 21000));
    CHECK_FALSE(echo.IsWrittenEcho("/m/e/f", FileStamp{1, 42, 2000, 5}, 21000));  // newer mtime
    CHECK_FALSE(echo.IsWrittenEcho("/m/e/f", FileStamp{1, 42, 1000, 6}, 21000));  // other size
    CHECK_FALSE(echo.IsWrittenEcho("/m/e/f", stamp, 22001));
  }
  SECTION("lost write events make every change an echo for the window") {
    echo.NoteOverflow(30000);
    CHECK(echo.IsWrittenEcho("/anything", FileStamp{}, 31000));
    CHECK(echo.IsRemovedEcho("/anything", 31000));
    CHECK_FALSE(echo.IsWrittenEcho("/anything", FileStamp{}, 32001));
  }
  SECTION("at most kMaxEntries are kept, the oldest dropped") {
    for (size_t i = 0; i <= EchoFilter::kMaxEntries; ++i) {
      echo.NoteGuestWrite("", 3, 1000 + i, 40000);
    }
    CHECK_FALSE(echo.IsWrittenEcho("/x", FileStamp{3, 1000, 0, 0}, 40000));
    CHECK(echo.IsWrittenEcho("/x", FileStamp{3, 1000 + EchoFilter::kMaxEntries, 0, 0}, 40000));
  }
}

TEST_CASE("fanotify records other processes' writes, not the agent's own (root)",
          "[agent][replay][root]") {
  if (geteuid() != 0) {
    WARN("not root: fanotify needs CAP_SYS_ADMIN; not tested");
    return;
  }
  TempMount t;
  // A file system of its own, so the mark sees only this test's writes.
  if (mount("cove-test", t.mount.path.c_str(), "tmpfs", 0, "size=1m") != 0) {
    WARN("cannot mount a tmpfs here; not tested");
    return;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{t.mount.path};
  GuestWrites writes;
  REQUIRE(writes.Watch(t.mount.path));
  const std::string by_child = t.mount.path + "/by-child";
  const std::string by_self = t.mount.path + "/by-self";
  const pid_t child = fork();
  if (child == 0) {
    std::ofstream(by_child) << "x";
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  std::ofstream(by_self) << "x";

  EchoFilter echo;
  const int fd = writes.PollFd(0);
  REQUIRE(fd >= 0);
  pollfd pfd{fd, POLLIN, 0};
  REQUIRE(poll(&pfd, 1, 5000) == 1);
  writes.Drain(echo, 1000);
  CHECK(echo.IsWrittenEcho(by_child, FileStamp{}, 1000));
  CHECK_FALSE(echo.IsWrittenEcho(by_self, FileStamp{}, 1000));
  // After reading, the fd rests a while so bursts merge in the kernel.
  CHECK(writes.PollFd(1000) == -1);
  CHECK(writes.NextDueMs() == 1000 + GuestWrites::kHoldMs);
  CHECK(writes.PollFd(1000 + GuestWrites::kHoldMs) == fd);
}

}  // namespace cove::agent
