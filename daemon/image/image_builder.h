// Runs the guest image recipe (guest/image/build-image, a script that needs
// only the Debian mirror and no root) as a child process and turns its
// output into progress. One build at a time per coved.
//
// Threading: loop thread only; callbacks run on it.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class ImageBuilder {
 public:
  struct Request {
    std::string arch;
    std::string output_dir;
    std::string cache_dir;
  };
  // `phase` is true for "phase: ..." lines of the recipe, false for its log.
  using Line = std::function<void(bool phase, const std::string& text)>;
  using Done = std::function<void(absl::Status)>;

  ImageBuilder(EventLoop& loop, std::string script) : loop_(loop), script_(std::move(script)) {}
  ~ImageBuilder();

  // The recipe: $COVE_IMAGE_BUILDER, else share/cove/build-image beside the
  // installed binaries, else the source tree coved was built from.
  static std::string FindScript(const std::string& exe_dir);

  bool busy() const { return running_ != nullptr; }
  void Build(const Request& request, Line line, Done done);
  // Stops the running build (its whole process group); its Done reports the
  // failure. The recipe removes its half-built output on the way out.
  void Cancel();

 private:
  struct Run;
  void Finish(absl::Status status);

  EventLoop& loop_;
  std::string script_;
  std::shared_ptr<Run> running_;
};

}  // namespace cove::daemon
