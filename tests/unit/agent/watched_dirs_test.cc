// Finding watched directories: real inotify watches made by the test, read
// back from this process's own fdinfo, and turned into paths in a temporary
// directory standing in for a cove mount (the code does not care which file
// system it is on). As root the handle route is taken; either way the tree
// walk (9p's route) is tested too.
#include "guest/agent/mounts/watched_dirs.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <string>

namespace cove::agent {
namespace {

// A temporary directory tree, removed with everything in it at the end.
struct TempTree {
  TempTree() {
    char tmpl[] = "/tmp/cove-watched-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    char resolved[PATH_MAX];
    REQUIRE(realpath(tmpl, resolved) != nullptr);
    path = resolved;
  }
  ~TempTree() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string Make(const std::string& rel) const {
    const std::string full = path + "/" + rel;
    REQUIRE(mkdir(full.c_str(), 0755) == 0);
    return full;
  }
  CoveMount AsMount(const std::string& tag) const {
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    return CoveMount{tag, path, FsType::kVirtiofs, KernelDevFromUser(st.st_dev), false};
  }
  std::string path;
};

uint32_t KernelDevOf(const std::string& path) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return KernelDevFromUser(st.st_dev);
}

}  // namespace

TEST_CASE("fdinfo lines of inotify watches are parsed", "[agent][watched]") {
  auto w = ParseInotifyLine(
      "inotify wd:1a ino:3e8 sdev:2b mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 "
      "f_handle:0102030405060708");
  REQUIRE(w);
  CHECK(w->wd == 0x1au);
  CHECK(w->ino == 0x3e8u);
  CHECK(w->sdev == 0x2bu);
  CHECK(w->mask == 0xfceu);
  CHECK(w->handle_type == 1);
  CHECK(w->handle == std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  // Kernels that cannot encode a handle print none.
  w = ParseInotifyLine("inotify wd:2 ino:1 sdev:15 mask:fff ignored_mask:0 ");
  REQUIRE(w);
  CHECK(w->handle.empty());
  // A handle whose length disagrees is not used.
  w = ParseInotifyLine("inotify wd:2 ino:1 sdev:15 mask:fff fhandle-bytes:8 f_handle:0102");
  REQUIRE(w);
  CHECK(w->handle.empty());
  CHECK_FALSE(ParseInotifyLine("pos:\t0"));
  CHECK_FALSE(ParseInotifyLine("inotify ino:1 sdev:15"));  // no wd
  CHECK_FALSE(ParseInotifyLine("inotify wd:zz ino:1 sdev:15"));
}

TEST_CASE("this process's own watches are read back from its fdinfo", "[agent][watched]") {
  TempTree tree;
  const std::string sub = tree.Make("sub");
  const int in = inotify_init1(IN_CLOEXEC);
  REQUIRE(in >= 0);
  const int wd = inotify_add_watch(in, sub.c_str(), IN_ATTRIB | IN_CLOSE_WRITE);
  REQUIRE(wd >= 0);
  struct stat st {};
  REQUIRE(stat(sub.c_str(), &st) == 0);

  std::ifstream file("/proc/self/fdinfo/" + std::to_string(in));
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const std::vector<InotifyWatch> watches = ParseInotifyFdinfo(text);
  INFO(text);
  REQUIRE(watches.size() == 1);
  CHECK(watches[0].wd == static_cast<uint32_t>(wd));
  CHECK(watches[0].ino == st.st_ino);
  // The conversion under test: fdinfo's sdev is the kernel's s_dev.
  CHECK(watches[0].sdev == KernelDevFromUser(st.st_dev));
  CHECK((watches[0].mask & (IN_ATTRIB | IN_CLOSE_WRITE)) == (IN_ATTRIB | IN_CLOSE_WRITE));

  // The /proc scan finds it too, and only on the devices asked for.
  auto listed = ListInotifyWatches({KernelDevFromUser(st.st_dev)}, 100000, 0);
  CHECK(std::any_of(listed.begin(), listed.end(),
                    [&](const InotifyWatch& w) { return w.ino == st.st_ino; }));
  CHECK(ListInotifyWatches({KernelDevFromUser(st.st_dev)}, 100000).size() <= listed.size());
  CHECK(ListInotifyWatches({0xfffffu}, 100000, 0).empty());
  close(in);
}

TEST_CASE("watched inodes become directories relative to the mount", "[agent][watched]") {
  TempTree tree;
  tree.Make("a");
  tree.Make("a/b");
  tree.Make("c");
  std::ofstream(tree.path + "/c/file") << "x";
  const int in = inotify_init1(IN_CLOEXEC);
  REQUIRE(in >= 0);
  for (const std::string rel : {"", "/a/b", "/c/file"}) {
    REQUIRE(inotify_add_watch(in, (tree.path + rel).c_str(), IN_ATTRIB) >= 0);
  }
  // A watch outside the mount on the same file system is not reported.
  const std::string outside = tree.path + "-outside";
  REQUIRE(mkdir(outside.c_str(), 0755) == 0);
  REQUIRE(inotify_add_watch(in, outside.c_str(), IN_ATTRIB) >= 0);

  const CoveMount mount = tree.AsMount("cove0");
  REQUIRE(mount.kernel_dev == KernelDevOf(outside));
  const auto watches = ListInotifyWatches({mount.kernel_dev}, 100000, 0);
  // The watched file counts as its directory, c.
  const std::vector<std::string> expected = {"", "a/b", "c"};

  for (bool handles : {true, false}) {
    INFO((handles ? "handles first (the walk without root)" : "the walk only"));
    WatchedDirFinder finder(handles);
    CHECK(finder.Resolve(mount, watches, 0) == expected);
    // open_by_handle_at needs CAP_DAC_READ_SEARCH: root only.
    if (handles && geteuid() == 0) {
      CHECK(finder.stats().by_handle == 2);  // the root is known by its inode
      CHECK(finder.stats().by_walk == 0);
    } else {
      CHECK(finder.stats().by_walk == 2);
    }
    // A renamed directory is found at its new place on a later scan.
    REQUIRE(rename((tree.path + "/a").c_str(), (tree.path + "/a2").c_str()) == 0);
    CHECK(finder.Resolve(mount, watches, 1000) == std::vector<std::string>{"", "a2/b", "c"});
    REQUIRE(rename((tree.path + "/a2").c_str(), (tree.path + "/a").c_str()) == 0);
    // Watches that went away are forgotten.
    CHECK(finder.Resolve(mount, {}, 2000).empty());
    CHECK_FALSE(finder.walking());
  }
  close(in);
  rmdir(outside.c_str());
}

TEST_CASE("scans follow process events, idle slowly, and bound their own cost",
          "[agent][watched]") {
  ScanSchedule s;
  s.OnScanned(0, 0);
  CHECK(s.NextDueMs() == ScanSchedule::kIdleMs);
  s.OnProcessEvent(1000);
  for (int64_t offset : {500, 1000, 2000, 4000, 8000}) {
    REQUIRE(s.NextDueMs() == 1000 + offset);
    s.OnScanned(1000 + offset, 1000 + offset);
  }
  CHECK(s.NextDueMs() == 9000 + ScanSchedule::kIdleMs);
  // A new event starts the series over.
  s.OnProcessEvent(15000);
  CHECK(s.NextDueMs() == 15500);
  // A scan that took 100 ms keeps the next one 2 s away (5% of the time).
  s.OnScanned(15500, 15600);
  CHECK(s.NextDueMs() == 15600 + 100 * ScanSchedule::kMaxDutyDivisor);
  s.OnScanned(17600, 17600);
  CHECK(s.NextDueMs() == 19000);  // back on the series: 15000 + 4000
}

}  // namespace cove::agent
