#include "daemon/fetch/download.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace cove::fetch {
namespace {

using Clock = std::chrono::steady_clock;

struct Transfer {
  int fd = -1;
  EVP_MD_CTX* sha = nullptr;
  const Progress* progress = nullptr;
  int write_errno = 0;
  Clock::time_point begin = Clock::now();
  Clock::time_point last_report{};
};

uint64_t Rate(uint64_t bytes, Clock::time_point begin) {
  const double secs = std::chrono::duration<double>(Clock::now() - begin).count();
  return secs > 0 ? static_cast<uint64_t>(static_cast<double>(bytes) / secs) : 0;
}

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

// curl calls this often while data flows and about once a second while none
// does, so the report below comes once a second either way.
int OnProgress(void* user, curl_off_t total, curl_off_t done, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  const auto now = Clock::now();
  if (now - t->last_report < std::chrono::seconds(1)) return 0;
  t->last_report = now;
  const auto bytes = static_cast<uint64_t>(done);
  return (*t->progress)(bytes, static_cast<uint64_t>(total), Rate(bytes, t->begin)) ? 0 : 1;
}

}  // namespace

absl::Status CheckDigest(const std::string& sha256) {
  const std::string want = absl::AsciiStrToLower(sha256);
  if (!want.empty() &&
      (want.size() != 64 || want.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--digest \"", sha256, "\" is not a sha256 (64 hex digits; `sha256sum FILE`)"));
  }
  return absl::OkStatus();
}

absl::Status Download(const std::string& url, const std::string& file, const std::string& sha256,
                      const Progress& progress) {
  if (absl::Status st = CheckDigest(sha256); !st.ok()) return st;
  const std::string want = absl::AsciiStrToLower(sha256);
  curl_global_init(CURL_GLOBAL_DEFAULT);
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
    const auto bytes = static_cast<uint64_t>(got);
    progress(bytes, bytes, Rate(bytes, t.begin));
  }
  if (!st.ok()) ::unlink(file.c_str());
  return st;
}

}  // namespace cove::fetch
