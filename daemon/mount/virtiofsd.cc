#include "daemon/mount/virtiofsd.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/subprocess.h"

namespace cove::daemon {
namespace {

std::vector<std::string> DescriptorBinaries() {
  std::vector<std::string> out;
  for (const char* dir : {"/etc/qemu/vhost-user", "/usr/share/qemu/vhost-user"}) {
    DIR* d = ::opendir(dir);
    if (d == nullptr) continue;
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      if (absl::EndsWith(e->d_name, ".json")) names.push_back(e->d_name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());  // the descriptors' own priority order
    for (const std::string& name : names) {
      auto text = ReadFile(absl::StrCat(dir, "/", name));
      if (!text.ok()) continue;
      auto j = nlohmann::json::parse(*text, nullptr, false);
      if (j.is_object() && j.value("type", "") == "fs" && j.contains("binary") &&
          j["binary"].is_string()) {
        out.push_back(j["binary"].get<std::string>());
      }
    }
  }
  return out;
}

absl::StatusOr<VirtiofsdBinary> Search();

}  // namespace

absl::StatusOr<VirtiofsdBinary> FindVirtiofsd() {
  // Each candidate's --version is a process: found once per coved (and its
  // environment), looked for again at most every 30 s while there is none.
  static std::mutex mu;
  static std::optional<absl::StatusOr<VirtiofsdBinary>> cached;
  static std::chrono::steady_clock::time_point cached_at;
  std::lock_guard<std::mutex> lock(mu);
  const auto now = std::chrono::steady_clock::now();
  if (cached && (cached->ok() || now - cached_at < std::chrono::seconds(30))) return *cached;
  cached = Search();
  cached_at = now;
  return *cached;
}

namespace {

absl::StatusOr<VirtiofsdBinary> Search() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("COVE_VIRTIOFSD"); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  }
  if (auto in_path = FindInPath("virtiofsd"); in_path.ok()) candidates.push_back(*in_path);
  candidates.push_back("/usr/libexec/virtiofsd");
  candidates.push_back("/usr/lib/qemu/virtiofsd");
  for (std::string& b : DescriptorBinaries()) candidates.push_back(std::move(b));

  std::vector<std::string> passed_over;
  for (const std::string& path : candidates) {
    if (::access(path.c_str(), X_OK) != 0) continue;
    auto version = RunCommand({path, "--version"}, std::chrono::seconds(5));
    if (!version.ok() || !version->ok()) {
      passed_over.push_back(absl::StrCat(path, " (--version failed)"));
      continue;
    }
    const std::string first(
        absl::StripAsciiWhitespace(version->output.substr(0, version->output.find('\n'))));
    // The Rust one says "virtiofsd 1.13.2"; QEMU's C one "virtiofsd version 7.2.x".
    if (absl::StartsWith(first, "virtiofsd ") && first.size() > 10 &&
        absl::ascii_isdigit(static_cast<unsigned char>(first[10]))) {
      return VirtiofsdBinary{path, first};
    }
    passed_over.push_back(
        absl::StrCat(path, " (", first, ": QEMU's C virtiofsd, which needs root)"));
  }
  return absl::NotFoundError(
      absl::StrCat("no virtiofsd that runs as you", passed_over.empty() ? "" : ": passed over ",
                   absl::StrJoin(passed_over, ", "),
                   "; install the Rust virtiofsd (Debian 13: apt-get install virtiofsd) or point "
                   "COVE_VIRTIOFSD at one"));
}

}  // namespace

std::vector<std::string> VirtiofsdArgv(const std::string& binary, const std::string& shared_dir,
                                       bool read_only, unsigned uid, unsigned gid) {
  std::vector<std::string> argv = {
      binary, "--fd=3", "--shared-dir", shared_dir,
      // Unprivileged, virtiofsd makes a user namespace in which only our own
      // uid and gid exist: any guest uid is squashed to ours, so files the
      // guest makes are ours and chown cannot fail with EINVAL.
      "--sandbox", "namespace", "--translate-uid",
      absl::StrCat("squash-guest:0:", uid, ":4294967295"), "--translate-gid",
      absl::StrCat("squash-guest:0:", gid, ":4294967295"),
      // auto: the guest caches attributes and names for a second and a
      // file's data until it is opened again after a host change.
      "--cache", "auto", "--log-level", "warn"};
  if (read_only) argv.push_back("--readonly");
  return argv;
}

}  // namespace cove::daemon
