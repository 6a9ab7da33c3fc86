// Mounting host directories in the guest: the pure parts on fixed text, and
// EnsureMounted's refusals on this machine (a real virtiofs or 9p device
// needs a guest; see the session test for the error a missing tag gives).
#include "guest/agent/mounts/mounts.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

namespace cove::agent {

TEST_CASE("device numbers convert between the kernel's and stat's encoding", "[agent][mounts]") {
  // An anonymous file system (virtiofs, 9p, tmpfs): major 0.
  CHECK(KernelDevFromUser(makedev(0, 43)) == 0x2bu);
  CHECK(UserDevFromKernel(0x2b) == makedev(0, 43));
  // A block device: 254:0 is "fe00000" in fdinfo and 0xfe00 in st_dev.
  CHECK(KernelDevFromUser(makedev(254, 0)) == 0xfe00000u);
  CHECK(makedev(254, 0) == 0xfe00u);
  // Minors past 255 are where the two encodings differ most.
  CHECK(KernelDevFromUser(makedev(8, 300)) == ((8u << 20) | 300u));
  for (dev_t dev : {makedev(0, 0), makedev(0, 1234), makedev(259, 65536), makedev(4095, 1048575)}) {
    CHECK(UserDevFromKernel(KernelDevFromUser(dev)) == dev);
  }
}

TEST_CASE("mountinfo lines are parsed, escapes and optional fields included", "[agent][mounts]") {
  const char* text =
      "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
      "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "90 27 0:45 / /home/u rw,relatime shared:40 master:2 - virtiofs cove0 rw\n"
      "91 27 0:46 / /srv/with\\040space rw - 9p cove1 rw,trans=virtio\n"
      "garbage\n"
      "92 90 0:47 / /home/u rw - tmpfs tmpfs rw\n";
  const std::vector<MountInfoEntry> entries = ParseMountInfo(text);
  REQUIRE(entries.size() == 5);
  CHECK(entries[2].major == 0);
  CHECK(entries[2].minor == 45);
  CHECK(entries[2].mount_point == "/home/u");
  CHECK(entries[2].fstype == "virtiofs");
  CHECK(entries[2].source == "cove0");
  CHECK(entries[3].mount_point == "/srv/with space");
  CHECK(entries[3].fstype == "9p");

  SECTION("already mounted: the right path, type and tag") {
    auto found = FindMount(entries, "/home/u", "virtiofs", "cove0");
    REQUIRE(found);
    CHECK(found->minor == 45);
    CHECK(FindMount(entries, "/srv/with space", "9p", "cove1"));
    CHECK_FALSE(FindMount(entries, "/home/u", "virtiofs", "cove1"));  // another tag
    CHECK_FALSE(FindMount(entries, "/home/u", "9p", "cove0"));        // another type
    CHECK_FALSE(FindMount(entries, "/home", "virtiofs", "cove0"));    // another place
  }
}

TEST_CASE("module lists name modules in load order", "[agent][mounts]") {
  CHECK(ParseModuleList("9pnet\n9pnet_virtio\n9p\n") ==
        std::vector<std::string>{"9pnet", "9pnet_virtio", "9p"});
  CHECK(ParseModuleList("  fuse \n\n# comment\nvirtiofs # trailing\n../evil\n") ==
        std::vector<std::string>{"fuse", "virtiofs"});
  CHECK(ParseModuleList("").empty());  // built in
}

TEST_CASE("9p mounts over virtio with the Linux dialect, big messages and mmap caching",
          "[agent][mounts]") {
  CHECK(std::string(kNinePMountOptions) ==
        "trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client");
  CHECK(std::string(FsTypeName(FsType::kNineP)) == "9p");
  CHECK(std::string(FsTypeName(FsType::kVirtiofs)) == "virtiofs");
}

TEST_CASE("mount errors say what failed and what to check", "[agent][mounts]") {
  CHECK(DescribeMountError(FsType::kVirtiofs, "cove0", "/home/u", ENODEV, true) ==
        "mount virtiofs cove0 on /home/u: No such device (is the virtiofs device missing?)");
  CHECK(DescribeMountError(FsType::kNineP, "cove1", "/srv", ENODEV, false) ==
        "mount 9p cove1 on /srv: No such device (this guest kernel has no 9p file system: mount "
        "another way (--mount-type), or none (cove set NAME --mount none))");
  CHECK(DescribeMountError(FsType::kVirtiofs, "cove0", "/home/u", EINVAL, true) ==
        "mount virtiofs cove0 on /home/u: Invalid argument (is there a virtiofs device with the "
        "tag cove0?)");
  CHECK(DescribeMountError(FsType::kNineP, "cove1", "/srv", ENOENT, true) ==
        "mount 9p cove1 on /srv: No such file or directory (is there a virtio-9p device with the "
        "tag cove1?)");
  CHECK(DescribeMountError(FsType::kNineP, "t", "/p", EIO, true) ==
        "mount 9p t on /p: Input/output error");
}

TEST_CASE("mount requests that cannot be right are refused before mount(2)", "[agent][mounts]") {
  MountResult r = EnsureMounted({"cove0", "relative/path", FsType::kVirtiofs, false});
  CHECK_FALSE(r.mounted);
  CHECK(r.error == "mount virtiofs cove0 on relative/path: the guest path is not absolute");
  r = EnsureMounted({"", "/tmp/x", FsType::kVirtiofs, false});
  CHECK_FALSE(r.mounted);
  CHECK(r.error == "mount virtiofs  on /tmp/x: the mount has no tag");
}

TEST_CASE("a mount of a tag no device has fails with the kernel's error, mount point made",
          "[agent][mounts]") {
  char tmpl[] = "/tmp/cove-mounts-test.XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const std::string point = dir + "/a/b";
  for (FsType type : {FsType::kVirtiofs, FsType::kNineP}) {
    // As root this reaches mount(2) (ENODEV, EINVAL or ENOENT depending on
    // the host's modules); otherwise EPERM. Never mounted either way.
    MountResult r = EnsureMounted({"cove-test-no-such-tag", point, type, true});
    INFO(r.error);
    CHECK_FALSE(r.mounted);
    CHECK(r.error.starts_with(std::string("mount ") + FsTypeName(type) +
                              " cove-test-no-such-tag on " + point + ": "));
    struct stat st {};
    CHECK((stat(point.c_str(), &st) == 0 && S_ISDIR(st.st_mode)));
  }
  rmdir(point.c_str());
  rmdir((dir + "/a").c_str());
  rmdir(dir.c_str());
}

}  // namespace cove::agent
