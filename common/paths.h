// Where cove keeps its files. Everything lives under one home directory,
// $COVE_HOME or ~/.cove (short, because unix socket paths are limited).
//
//   $COVE_HOME/coved.sock            the API socket (0600)
//   $COVE_HOME/coved.lock            one daemon per home
//   $COVE_HOME/coved.log             daemon log (rotated)
//   $COVE_HOME/images/NAME/          guest images
//   $COVE_HOME/machines/NAME/        one machine (see daemon/store)
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cove {

// sun_path is 104 bytes on macOS (108 on Linux); with the terminating NUL a
// path may have 103 bytes. cove uses the smaller limit everywhere so a home
// that works on Linux works on macOS too.
inline constexpr size_t kMaxSocketPath = 103;

// $COVE_HOME if set and non-empty, else $HOME/.cove. Made absolute.
absl::StatusOr<std::string> ResolveCoveHome();

// Where facts about this host that hold for every cove home of the user are
// cached (the accelerator verdicts): $XDG_CACHE_HOME/cove, else
// ~/.cache/cove (~/Library/Caches/cove on macOS). Empty without HOME.
std::string UserCacheDir();

// OK if `path` fits a unix socket address; otherwise an error that says how
// long it is and what to do.
absl::Status CheckSocketPath(absl::string_view path);

// Creates `dir` (and parents) with mode 0700 if missing; fixes its mode if it
// exists and is not 0700.
absl::Status EnsurePrivateDir(const std::string& dir);

struct HomeLayout {
  std::string home;
  std::string socket() const { return home + "/coved.sock"; }
  std::string lock() const { return home + "/coved.lock"; }
  std::string log() const { return home + "/coved.log"; }
  std::string images() const { return home + "/images"; }
  std::string machines() const { return home + "/machines"; }
  std::string machine_dir(absl::string_view name) const {
    return machines() + "/" + std::string(name);
  }
  std::string cache() const { return home + "/cache"; }
};

}  // namespace cove
