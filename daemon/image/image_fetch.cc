#include "daemon/image/image_fetch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/subprocess.h"
#include "daemon/fetch/fetch_protocol.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace cove::daemon {
namespace {

namespace fs = std::filesystem;

// cove-fetch says something at least once a second while it works, and
// libcurl's own limits (30 s to connect, 1 KiB/s for a minute) end a stalled
// download; this long a silence means it hangs.
constexpr auto kSilenceLimit = std::chrono::minutes(5);

// Installed: PREFIX/lib/cove/cove-fetch beside PREFIX/bin/coved
// (daemon/CMakeLists.txt); in a build tree, coved's own directory.
std::string HelperPath() {
  std::error_code ec;
  const fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  const std::string installed = (exe_dir / "../lib/cove/cove-fetch").string();
  if (::access(installed.c_str(), X_OK) == 0) return installed;
  return (exe_dir / "cove-fetch").string();
}

// Starts `argv` with stdin from /dev/null and stdout into a new pipe whose
// read end (close-on-exec) goes to `*out`; stderr is coved's.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int* out) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run ", argv[0], " (installed with coved, for image downloads): ", std::strerror(rc),
        "; reinstall cove"));
  }
  *out = pipefd[0];
  return pid;
}

// What one run of cove-fetch said.
struct Outcome {
  absl::Status status;  // its fail line, or ours about it
  std::string image_dir;
};

// Runs cove-fetch with `args` until it exits, passing its progress to
// `progress` (may be null); a false from `progress` kills it and cancels.
Outcome RunHelper(const std::vector<std::string>& args, const FetchProgress* progress,
                  absl::string_view cancelled) {
  std::vector<std::string> argv = {HelperPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  int fd = -1;
  absl::StatusOr<pid_t> pid = Spawn(argv, &fd);
  if (!pid.ok()) return {pid.status(), ""};
  Outcome outcome;
  bool said_fail = false, killed = false;
  auto stop = [&](absl::Status why) {
    ::kill(*pid, SIGKILL);
    killed = true;
    outcome.status = std::move(why);
  };
  std::string buffer;
  auto last_heard = std::chrono::steady_clock::now();
  char chunk[4096];
  while (!killed) {
    pollfd pfd{fd, POLLIN, 0};
    const int n = ::poll(&pfd, 1, 1000);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) {
      if (std::chrono::steady_clock::now() - last_heard > kSilenceLimit) {
        stop(absl::DeadlineExceededError(
            absl::StrCat(argv[0], " said nothing for ",
                         std::chrono::duration_cast<std::chrono::seconds>(kSilenceLimit).count(),
                         " s and was stopped; try again")));
      }
      continue;
    }
    const ssize_t got = ::read(fd, chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // it exited (or closed its stdout)
    last_heard = std::chrono::steady_clock::now();
    buffer.append(chunk, static_cast<size_t>(got));
    size_t eol;
    while (!killed && (eol = buffer.find('\n')) != std::string::npos) {
      absl::StatusOr<fetch::Line> line = fetch::ParseLine(absl::string_view(buffer).substr(0, eol));
      buffer.erase(0, eol + 1);
      if (!line.ok()) {
        stop(line.status());
      } else if (line->kind == fetch::Line::Kind::kProgress) {
        if (progress != nullptr && !(*progress)(line->done, line->total, line->per_second)) {
          stop(absl::CancelledError(cancelled));
        }
      } else if (line->kind == fetch::Line::Kind::kImage) {
        outcome.image_dir = line->dir;
      } else {
        outcome.status = line->status;
        said_fail = true;
      }
    }
    if (!killed && buffer.size() > fetch::kMaxLine) {
      stop(absl::InternalError(
          absl::StrCat(argv[0], " wrote a line longer than ", fetch::kMaxLine, " bytes")));
    }
  }
  ::close(fd);
  int wstatus = 0;
  while (::waitpid(*pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (killed) return outcome;
  const bool clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == (said_fail ? 1 : 0);
  if (!clean) {
    CommandResult how;
    how.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    how.term_signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    spdlog::error("{} {} ended with {}", argv[0], args.front(), how.Describe());
    outcome.status = absl::InternalError(absl::StrCat(
        argv[0], " ended with ", how.Describe(), " before it finished; coved's log may say more"));
  }
  return outcome;
}

}  // namespace

bool IsUrl(const std::string& ref) {
  return absl::StartsWith(ref, "http://") || absl::StartsWith(ref, "https://");
}

absl::Status Download(const std::string& url, const std::string& file, const std::string& sha256,
                      const FetchProgress& progress) {
  std::vector<std::string> args = {"download", url, file};
  if (!sha256.empty()) args.push_back(sha256);
  Outcome outcome = RunHelper(args, &progress, "the download was cancelled");
  // cove-fetch removes the file itself, unless it was killed or crashed.
  if (!outcome.status.ok()) ::unlink(file.c_str());
  return outcome.status;
}

absl::StatusOr<std::string> UnpackImage(const std::string& archive, const std::string& dir) {
  Outcome outcome = RunHelper({"unpack", archive, dir}, nullptr, "");
  if (!outcome.status.ok()) return outcome.status;
  if (outcome.image_dir.empty()) {
    return absl::InternalError("cove-fetch unpacked the image but did not say where");
  }
  return outcome.image_dir;
}

}  // namespace cove::daemon
