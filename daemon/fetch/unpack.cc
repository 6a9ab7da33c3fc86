#include "daemon/fetch/unpack.h"

#include <archive.h>
#include <archive_entry.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace cove::fetch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

absl::Status CheckEntry(struct archive_entry* entry, const std::string& path) {
  const mode_t type = archive_entry_filetype(entry);
  if (type != AE_IFREG && type != AE_IFDIR) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing ", path, " in the image archive: an image holds only files and directories"));
  }
  if (archive_entry_hardlink(entry) != nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing ", path, " in the image archive: a hard link"));
  }
  const fs::path p(path);
  if (path.empty() || p.is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing \"", path, "\" in the image archive: not a relative path"));
  }
  for (const auto& part : p) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("refusing ", path, " in the image archive: it climbs out with .."));
    }
  }
  return absl::OkStatus();
}

// Reports the compressed bytes read so far, at most once a second.
class Reporter {
 public:
  Reporter(struct archive* in, uint64_t size, const Progress& progress)
      : in_(in), size_(size), progress_(progress) {}
  bool Tick() {
    const auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(1)) return true;
    last_ = now;
    const auto done = static_cast<uint64_t>(archive_filter_bytes(in_, -1));
    const double secs = std::chrono::duration<double>(now - begin_).count();
    return progress_(done, size_,
                     secs > 0 ? static_cast<uint64_t>(static_cast<double>(done) / secs) : 0);
  }

 private:
  struct archive* in_;
  const uint64_t size_;
  const Progress& progress_;
  const Clock::time_point begin_ = Clock::now();
  Clock::time_point last_{};
};

absl::Status Extract(struct archive* in, struct archive* out, const std::string& dir,
                     Reporter& reporter) {
  struct archive_entry* entry = nullptr;
  for (;;) {
    const int r = archive_read_next_header(in, &entry);
    if (r == ARCHIVE_EOF) return absl::OkStatus();
    if (r != ARCHIVE_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read the image archive: ", archive_error_string(in)));
    }
    const std::string path = archive_entry_pathname(entry);
    // An image is files and directories, under the archive's top: the
    // path is checked here, since it is written below `dir` (absolute).
    if (absl::Status ok = CheckEntry(entry, path); !ok.ok()) return ok;
    archive_entry_set_pathname(entry, (fs::path(dir) / path).c_str());
    if (archive_write_header(out, entry) != ARCHIVE_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("refusing ", path, " in the image archive: ", archive_error_string(out)));
    }
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int d;
    while ((d = archive_read_data_block(in, &buf, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out, buf, size, offset) != ARCHIVE_OK) {
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot unpack ", path, ": ", archive_error_string(out)));
      }
      if (!reporter.Tick()) return absl::CancelledError("the unpacking was cancelled");
    }
    if (d != ARCHIVE_EOF) {
      return absl::InvalidArgumentError(
          absl::StrCat("the image archive is cut short in ", path, ": ", archive_error_string(in)));
    }
    archive_write_finish_entry(out);
  }
}

}  // namespace

absl::StatusOr<std::string> UnpackImage(const std::string& archive_path, const std::string& dir,
                                        const Progress& progress) {
  struct archive* in = archive_read_new();
  archive_read_support_filter_all(in);
  archive_read_support_format_tar(in);
  struct archive* out = archive_write_disk_new();
  archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                          ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                          ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  absl::Status st;
  if (archive_read_open_filename(in, archive_path.c_str(), 1 << 20) != ARCHIVE_OK) {
    st = absl::InvalidArgumentError(
        absl::StrCat("the download is not a tar archive: ", archive_error_string(in)));
  } else {
    std::error_code ec;
    const uintmax_t size = fs::file_size(archive_path, ec);
    Reporter reporter(in, ec ? 0 : static_cast<uint64_t>(size), progress);
    st = Extract(in, out, dir, reporter);
  }
  archive_read_free(in);
  archive_write_free(out);
  if (!st.ok()) return st;
  if (fs::exists(fs::path(dir) / "image.json")) return dir;
  // One directory holding the image (tar -C images -cf x.tar NAME).
  std::string found;
  int dirs = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory() && fs::exists(e.path() / "image.json")) {
      found = e.path().string();
      ++dirs;
    }
  }
  if (dirs != 1) {
    return absl::InvalidArgumentError(
        "the archive holds no image (an image.json at its top or in its one directory)");
  }
  return found;
}

}  // namespace cove::fetch
