// Helpers for daemon unit tests: a temporary directory and a tiny fake image.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/image/image_store.h"

namespace cove::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cove-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// An image directory whose files are a few bytes each, with true digests.
inline std::string MakeFakeImage(const std::string& dir, const std::string& arch = "x86_64") {
  std::filesystem::create_directories(dir);
  WriteText(dir + "/vmlinuz", "kernel");
  WriteText(dir + "/initrd.img", "initrd");
  WriteText(dir + "/rootfs.img", std::string(4096, 'r'));
  auto d = [&](const char* f) { return *cove::daemon::Sha256File(dir + "/" + f); };
  WriteText(
      dir + "/image.json",
      std::string(R"({"format":1,"name":"fake","arch":")") + arch +
          R"(","kernel_cmdline":"console=ttyS0","files":{"kernel":"vmlinuz","initrd":"initrd.img","rootfs":"rootfs.img"},"sha256":{"vmlinuz":")" +
          d("vmlinuz") + R"(","initrd.img":")" + d("initrd.img") + R"(","rootfs.img":")" +
          d("rootfs.img") + R"("},"rootfs_size_bytes":4096})");
  return dir;
}

}  // namespace cove::testing
