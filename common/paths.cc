#include "common/paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace cove {

absl::StatusOr<std::string> ResolveCoveHome() {
  std::string home;
  if (const char* env = std::getenv("COVE_HOME"); env != nullptr && *env != '\0') {
    home = env;
  } else if (const char* user_home = std::getenv("HOME"); user_home != nullptr && *user_home) {
    home = std::string(user_home) + "/.cove";
  } else {
    return absl::FailedPreconditionError("neither COVE_HOME nor HOME is set; set COVE_HOME");
  }
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(home, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("bad COVE_HOME \"", home, "\": ", ec.message()));
  std::string out = p.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string UserCacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::string(xdg) + "/cove";
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || home[0] != '/') return "";
#if defined(__APPLE__)
  return std::string(home) + "/Library/Caches/cove";
#else
  return std::string(home) + "/.cache/cove";
#endif
}

absl::Status CheckSocketPath(absl::string_view path) {
  if (path.size() <= kMaxSocketPath) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "socket path \"", path, "\" is ", path.size(), " bytes; unix sockets allow ", kMaxSocketPath,
      " (macOS limit). Use a shorter cove home (set COVE_HOME, e.g. ~/.cove) or a shorter machine "
      "name"));
}

absl::Status EnsurePrivateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return absl::InternalError(absl::StrCat("cannot stat ", dir, ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 0777) != 0700 && ::chmod(dir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("cannot chmod 0700 ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace cove
