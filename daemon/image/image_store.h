// Guest images on disk: a directory with image.json, a kernel, an initrd and
// a raw ext4 root disk (layout: docs/image.md). Images in the cache live in
// $COVE_HOME/images/NAME; a machine may also use an image by path.
//
// Threading: stateless apart from the home layout; safe on any thread. The
// digest checks read whole files, so they belong off the loop thread when the
// files are large.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/paths.h"
#include "cove/v1/images.pb.h"

namespace cove::daemon {

struct ImageInfo {
  std::string name;
  std::string path;  // absolute directory
  std::string arch;
  std::string suite;
  std::string kernel_version;
  std::string kernel_cmdline;
  std::string kernel;  // absolute file paths
  std::string initrd;
  std::string rootfs;
  std::map<std::string, std::string> sha256;  // file name -> hex digest
  std::map<std::string, std::string> packages;
  std::string created_at;
  uint64_t rootfs_size_bytes = 0;
  uint64_t size_bytes = 0;

  cove::v1::Image ToProto() const;
};

// hex sha256 of a file.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// "x86_64" / "aarch64" from what users type (amd64, arm64, x86_64, aarch64);
// error for anything else.
absl::StatusOr<std::string> NormalizeArch(const std::string& arch);
std::string HostArch();

class ImageStore {
 public:
  explicit ImageStore(HomeLayout layout) : layout_(std::move(layout)) {}

  static std::string DefaultName(const std::string& arch) { return "debian-trixie-" + arch; }
  std::string cache_path(const std::string& name) const { return layout_.images() + "/" + name; }

  // Reads and checks image.json and that the files exist. With
  // `verify_digests`, also hashes every file against image.json.
  absl::StatusOr<ImageInfo> Load(const std::string& dir, bool verify_digests) const;

  // `ref` is a path (contains '/') or a cached image's name; empty means the
  // default image for `arch`.
  absl::StatusOr<ImageInfo> Resolve(const std::string& ref, const std::string& arch,
                                    bool verify_digests) const;

  std::vector<ImageInfo> List() const;

 private:
  HomeLayout layout_;
};

}  // namespace cove::daemon
