// cove-fetch: the download and the unpacking of `cove image import URL`.
// coved runs it as a child, once per step, so that libcurl, its TLS library
// and libarchive are never loaded into the long-lived daemon (their shared
// objects cost it about 9 MiB resident; docs/benchmarks.md). Not for users:
// its stdout is for coved (daemon/fetch/fetch_protocol.h).
//
//   cove-fetch download URL FILE [SHA256]
//   cove-fetch unpack ARCHIVE DIR
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>

#include "daemon/fetch/download.h"
#include "daemon/fetch/fetch_protocol.h"
#include "daemon/fetch/unpack.h"

namespace {

// False once coved has stopped reading (it went away): the work then stops.
bool Say(const std::string& line) {
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t w = ::write(STDOUT_FILENO, line.data() + off, line.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<size_t>(w);
  }
  return true;
}

bool SayProgress(uint64_t done, uint64_t total, uint64_t per_second) {
  return Say(cove::fetch::ProgressLine(done, total, per_second));
}

int Fail(const absl::Status& status) {
  Say(cove::fetch::FailLine(status));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // A write to a coved that is gone fails with EPIPE instead of killing us,
  // so the download still removes its file.
  std::signal(SIGPIPE, SIG_IGN);
#if defined(__linux__)
  ::close_range(3, ~0U, 0);  // whatever coved's other threads left open
#endif
  const std::string verb = argc > 1 ? argv[1] : "";
  if (verb == "download" && (argc == 4 || argc == 5)) {
    const absl::Status st =
        cove::fetch::Download(argv[2], argv[3], argc == 5 ? argv[4] : "", SayProgress);
    return st.ok() ? 0 : Fail(st);
  }
  if (verb == "unpack" && argc == 4) {
    const absl::StatusOr<std::string> dir = cove::fetch::UnpackImage(argv[2], argv[3], SayProgress);
    if (!dir.ok()) return Fail(dir.status());
    return Say(cove::fetch::ImageLine(*dir)) ? 0 : 1;
  }
  std::fprintf(stderr,
               "usage: cove-fetch download URL FILE [SHA256] | cove-fetch unpack ARCHIVE DIR\n"
               "(run by coved for `cove image import URL`; not meant to be run by hand)\n");
  return 2;
}
