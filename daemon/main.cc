// coved: the per-user cove daemon. See daemon/daemon.h.
#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/paths.h"
#include "common/version.h"
#include "daemon/daemon.h"
#include "spdlog/sinks/rotating_file_sink.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

// Holds the home's lock for the life of the process: one coved per home.
// Returns the fd, or -1 after printing who holds it.
int LockHome(const std::string& lock_path) {
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror(("coved: cannot open " + lock_path).c_str());
    return -1;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    (void)!::pread(fd, buf, sizeof(buf) - 1, 0);
    std::fprintf(stderr, "coved: another coved (pid %s) already runs for this home (%s)\n",
                 buf[0] ? buf : "unknown", lock_path.c_str());
    ::close(fd);
    return -1;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  (void)!::ftruncate(fd, 0);
  (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"coved: the cove daemon. Usually started by `cove`, launchd or systemd."};
  bool foreground = false;
  std::string level = "info";
  app.add_flag("--foreground", foreground, "Also log to stderr");
  app.add_option("--log-level", level, "trace, debug, info, warn or error");
  app.set_version_flag("--version", std::string(cove::kVersion));
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGPIPE, SIG_IGN);
  // Every forwarded connection holds two descriptors and each forward a
  // listening socket: the default soft limit (often 1024) is too low.
  if (rlimit files{}; ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  // coved handles multi-megabyte buffers now and then (an initrd, image
  // digests) and then idles for days. Fixed thresholds make glibc map such
  // buffers and return them at once; its default adapts the threshold upward
  // and keeps the freed memory in the heap. Two arenas are plenty for a loop
  // thread and a few gRPC threads.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
  mallopt(M_ARENA_MAX, 2);
  // libuv's thread pool runs only the blocking file work of starts (the
  // initrd, EventLoop::Offload); its default 4 threads would idle forever.
  ::setenv("UV_THREADPOOL_SIZE", "2", /*overwrite=*/0);
  auto home = cove::ResolveCoveHome();
  if (!home.ok()) {
    std::fprintf(stderr, "coved: %s\n", std::string(home.status().message()).c_str());
    return 1;
  }
  cove::HomeLayout layout{*home};
  if (auto st = cove::CheckSocketPath(layout.socket()); !st.ok()) {
    std::fprintf(stderr, "coved: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  if (auto st = cove::EnsurePrivateDir(layout.home); !st.ok()) {
    std::fprintf(stderr, "coved: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  const int lock_fd = LockHome(layout.lock());
  if (lock_fd < 0) return 1;

  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(layout.log(), 5 << 20, 3));
  if (foreground) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  auto logger = std::make_shared<spdlog::logger>("coved", sinks.begin(), sinks.end());
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);

  std::error_code ec;
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  cove::daemon::DaemonOptions options{layout, std::filesystem::path(exe).parent_path().string()};
  auto st = cove::daemon::RunDaemon(options);
  if (!st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    std::fprintf(stderr, "coved: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
