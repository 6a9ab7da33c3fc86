#include "daemon/image/image_fetch.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace cove::daemon {
namespace {

namespace fs = std::filesystem;

struct Transfer {
  int fd = -1;
  EVP_MD_CTX* sha = nullptr;
  const FetchProgress* progress = nullptr;
  int write_errno = 0;
  std::chrono::steady_clock::time_point begin = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_report{};
};

size_t OnData(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  size_t off = 0;
  while (off < len) {
    const ssize_t w = ::write(t->fd, data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      t->write_errno = errno;
      return 0;  // curl stops with CURLE_WRITE_ERROR
    }
    off += static_cast<size_t>(w);
  }
  EVP_DigestUpdate(t->sha, data, len);
  return len;
}

int OnProgress(void* user, curl_off_t total, curl_off_t done, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  const auto now = std::chrono::steady_clock::now();
  if (now - t->last_report < std::chrono::seconds(1)) return 0;
  t->last_report = now;
  const double secs = std::chrono::duration<double>(now - t->begin).count();
  const uint64_t rate = secs > 0 ? static_cast<uint64_t>(static_cast<double>(done) / secs) : 0;
  return (*t->progress)(static_cast<uint64_t>(done), static_cast<uint64_t>(total), rate) ? 0 : 1;
}

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

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, []() { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

bool IsUrl(const std::string& ref) {
  return absl::StartsWith(ref, "http://") || absl::StartsWith(ref, "https://");
}

absl::Status Download(const std::string& url, const std::string& file, const std::string& sha256,
                      const FetchProgress& progress) {
  const std::string want = absl::AsciiStrToLower(sha256);
  if (!want.empty() && (want.size() != 64 || want.find_first_not_of("0123456789abcdef") !=
                                                 std::string::npos)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--digest \"", sha256, "\" is not a sha256 (64 hex digits; `sha256sum FILE`)"));
  }
  GlobalInit();
  Transfer t;
  t.fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (t.fd < 0) return FileError("cannot write", file, errno);
  t.sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(t.sha, EVP_sha256(), nullptr);
  t.progress = &progress;
  CURL* curl = curl_easy_init();
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);  // HTTP 4xx/5xx is an error
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  // A stalled transfer ends: under 1 KiB/s for a minute.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  const CURLcode rc = curl_easy_perform(curl);
  curl_off_t got = 0;
  curl_easy_getinfo(curl, CURLINFO_SIZE_DOWNLOAD_T, &got);
  curl_easy_cleanup(curl);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(t.sha, md, &len);
  EVP_MD_CTX_free(t.sha);
  const bool synced = ::fsync(t.fd) == 0;
  ::close(t.fd);
  absl::Status st;
  if (rc == CURLE_WRITE_ERROR && t.write_errno != 0) {
    st = FileError("cannot write the download to", file, t.write_errno);
  } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
    st = absl::CancelledError("the download was cancelled");
  } else if (rc != CURLE_OK) {
    st = absl::UnavailableError(absl::StrCat("downloading ", url, " failed after ", got,
                                             " bytes: ", *error ? error : curl_easy_strerror(rc)));
  } else if (!synced) {
    st = FileError("cannot write the download to", file, errno);
  } else {
    const std::string have =
        absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), len));
    if (!want.empty() && have != want) {
      st = absl::DataLossError(absl::StrCat("the download's sha256 is ", have, ", not ", want,
                                            " as --digest says: a wrong digest, or a changed or "
                                            "damaged file; nothing was imported"));
    }
  }
  if (st.ok()) {  // the last word on the transfer: its size and mean rate
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t.begin).count();
    const auto bytes = static_cast<uint64_t>(got);
    progress(bytes, bytes, secs > 0 ? static_cast<uint64_t>(static_cast<double>(bytes) / secs) : 0);
  }
  if (!st.ok()) ::unlink(file.c_str());
  return st;
}

absl::StatusOr<std::string> UnpackImage(const std::string& archive_path, const std::string& dir) {
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
  }
  struct archive_entry* entry = nullptr;
  while (st.ok()) {
    const int r = archive_read_next_header(in, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK) {
      st = absl::InvalidArgumentError(
          absl::StrCat("cannot read the image archive: ", archive_error_string(in)));
      break;
    }
    const std::string path = archive_entry_pathname(entry);
    // An image is files and directories, under the archive's top: the
    // path is checked here, since it is written below `dir` (absolute).
    if (absl::Status ok = CheckEntry(entry, path); !ok.ok()) {
      st = ok;
      break;
    }
    archive_entry_set_pathname(entry, (fs::path(dir) / path).c_str());
    if (archive_write_header(out, entry) != ARCHIVE_OK) {
      st = absl::InvalidArgumentError(
          absl::StrCat("refusing ", path, " in the image archive: ", archive_error_string(out)));
      break;
    }
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int d;
    while ((d = archive_read_data_block(in, &buf, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out, buf, size, offset) != ARCHIVE_OK) {
        st = absl::ResourceExhaustedError(
            absl::StrCat("cannot unpack ", path, ": ", archive_error_string(out)));
        break;
      }
    }
    if (st.ok() && d != ARCHIVE_EOF) {
      st = absl::InvalidArgumentError(
          absl::StrCat("the image archive is cut short in ", path, ": ", archive_error_string(in)));
    }
    archive_write_finish_entry(out);
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

}  // namespace cove::daemon
