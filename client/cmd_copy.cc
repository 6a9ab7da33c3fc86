// cove copy: files and directories between the host and a guest, as a tar
// stream over the Exec call (tar on the host, busybox tar in the guest).
//
//   cove copy ./src NAME:/dst     host -> guest
//   cove copy NAME:/src ./dst     guest -> host
//
// Like cp -r: a destination that is an existing directory receives the
// source inside it; otherwise the source is copied to that name.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "client/commands.h"
#include "client/exec_client.h"
#include "common/names.h"

extern char** environ;

namespace cove::client {
namespace {

struct Location {
  std::string machine;  // empty: the host
  std::string path;
};

Location ParseLocation(const std::string& arg) {
  const size_t colon = arg.find(':');
  if (colon != std::string::npos && colon > 0 && arg[0] != '/' && arg[0] != '.') {
    std::string name = arg.substr(0, colon);
    if (ValidateName(name).ok()) return {name, arg.substr(colon + 1)};
  }
  return {"", arg};
}

// Splits "a/b/c/" into ("a/b", "c").
std::pair<std::string, std::string> SplitPath(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// Starts tar on the host with one end of a pipe as its stdin or stdout.
// Returns the pid and our end of the pipe.
std::optional<std::pair<pid_t, int>> SpawnTar(const std::vector<std::string>& args,
                                              bool tar_reads) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return std::nullopt;
  const int tar_end = tar_reads ? fds[0] : fds[1];
  const int our_end = tar_reads ? fds[1] : fds[0];
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, tar_end, tar_reads ? 0 : 1);
  std::vector<char*> argv;
  std::vector<std::string> store = args;
  for (auto& a : store) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, "tar", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(tar_end);
  if (rc != 0) {
    close(our_end);
    std::fprintf(stderr, "cove: cannot run tar on the host: %s\n", std::strerror(rc));
    return std::nullopt;
  }
  return std::make_pair(pid, our_end);
}

int WaitTar(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Extracts into a directory of its own; the caller moves the result.
constexpr const char* kGuestExtract = R"(set -e
dst=$1; base=$2
if [ -d "$dst" ]; then exec tar -xf - -C "$dst"; fi
parent=$(dirname "$dst")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.cove-copy.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xf - -C "$tmp"
rm -rf "$dst"
mv "$tmp/$base" "$dst")";

int HostToGuest(Context& ctx, const Location& src, const Location& dst) {
  struct stat st {};
  if (stat(src.path.c_str(), &st) != 0) {
    std::fprintf(stderr, "cove: %s: %s\n", src.path.c_str(), std::strerror(errno));
    return 1;
  }
  auto [parent, base] = SplitPath(src.path);
  auto tar = SpawnTar({"tar", "-C", parent, "-cf", "-", "--", base}, /*tar_reads=*/false);
  if (!tar) return 1;
  ExecOptions o;
  o.machine = dst.machine;
  o.argv = {"sh", "-c", kGuestExtract, "sh", dst.path, base};
  o.in_fd = tar->second;
  const int guest = RunExec(ctx, o);
  close(tar->second);
  const int host = WaitTar(tar->first);
  if (host != 0) {
    std::fprintf(stderr, "cove: tar on the host failed (exit %d)\n", host);
    return 1;
  }
  return guest;
}

int GuestToHost(Context& ctx, const Location& src, const Location& dst) {
  auto [parent, base] = SplitPath(src.path);
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path target(dst.path);
  const bool into_dir = fs::is_directory(target, ec);
  fs::path extract_dir = target;
  if (!into_dir) {
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    fs::create_directories(dir, ec);
    std::string tmpl = (dir / ".cove-copy.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "cove: cannot make a directory in %s: %s\n", dir.c_str(),
                   std::strerror(errno));
      return 1;
    }
    extract_dir = tmpl;
  }
  auto tar = SpawnTar({"tar", "-C", extract_dir.string(), "-xf", "-"}, /*tar_reads=*/true);
  if (!tar) return 1;
  ExecOptions o;
  o.machine = src.machine;
  o.argv = {"tar", "-C", parent, "-cf", "-", base};
  o.in_fd = -1;
  o.out_fd = tar->second;
  const int guest = RunExec(ctx, o);
  close(tar->second);
  const int host = WaitTar(tar->first);
  int result = guest != 0 ? guest : host;
  if (!into_dir) {
    if (result == 0) {
      fs::remove_all(target, ec);
      fs::rename(extract_dir / base, target, ec);
      if (ec) {
        std::fprintf(stderr, "cove: cannot move the copy to %s: %s\n", target.c_str(),
                     ec.message().c_str());
        result = 1;
      }
    }
    fs::remove_all(extract_dir, ec);
  }
  return result;
}

}  // namespace

void RegisterCopy(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "copy", "Copy files or directories: cove copy SRC NAME:DST, or cove copy NAME:SRC DST");
  cmd->alias("cp");
  auto src = std::make_shared<std::string>();
  auto dst = std::make_shared<std::string>();
  cmd->add_option("source", *src, "A host path, or NAME:GUEST_PATH")->required();
  cmd->add_option("destination", *dst, "A host path, or NAME:GUEST_PATH")->required();
  cmd->callback([&ctx, &exit_code, src, dst]() {
    const Location from = ParseLocation(*src);
    const Location to = ParseLocation(*dst);
    if (from.machine.empty() == to.machine.empty()) {
      std::fprintf(stderr,
                   "cove: exactly one side must be in a machine, written NAME:PATH "
                   "(e.g. cove copy ./app default:/root/app)\n");
      exit_code = 2;
      return;
    }
    if (from.path.empty() || to.path.empty()) {
      std::fprintf(stderr, "cove: empty path; write NAME:/path\n");
      exit_code = 2;
      return;
    }
    exit_code = from.machine.empty() ? HostToGuest(ctx, from, to) : GuestToHost(ctx, from, to);
  });
}

}  // namespace cove::client
