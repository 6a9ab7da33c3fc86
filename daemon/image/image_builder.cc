#include "daemon/image/image_builder.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

// One child process with its two output pipes. Freed after all three libuv
// handles have closed.
struct ImageBuilder::Run {
  ImageBuilder* owner = nullptr;
  uv_process_t process{};
  uv_pipe_t out{}, err{};
  std::string out_partial, err_partial;
  std::deque<std::string> err_tail;  // last lines, for the error message
  Line line;
  Done done;
  int open_handles = 0;
  int64_t exit_status = -1;
  int term_signal = 0;
  bool exited = false;
  std::shared_ptr<Run> self;  // keeps the run alive until handles close
};

namespace {

void EmitLines(std::string& partial, std::string_view data,
               const std::function<void(std::string)>& fn) {
  partial.append(data);
  size_t pos;
  while ((pos = partial.find('\n')) != std::string::npos) {
    std::string line = partial.substr(0, pos);
    partial.erase(0, pos + 1);
    fn(std::move(line));
  }
  if (partial.size() > 64 * 1024) partial.clear();  // no line is that long
}

}  // namespace

ImageBuilder::~ImageBuilder() {
  if (running_) {
    running_->owner = nullptr;
    ::kill(-running_->process.pid, SIGTERM);
  }
}

std::string ImageBuilder::FindScript(const std::string& exe_dir) {
  if (const char* env = std::getenv("COVE_IMAGE_BUILDER"); env && *env) return env;
  const std::string installed = exe_dir + "/../share/cove/build-image";
  if (::access(installed.c_str(), X_OK) == 0) return installed;
  return std::string(kSourceDir) + "/guest/image/build-image";
}

void ImageBuilder::Cancel() {
  if (!running_ || running_->process.pid <= 0) return;
  spdlog::info("image build: cancelled, stopping process group {}", running_->process.pid);
  ::kill(-running_->process.pid, SIGTERM);
}

void ImageBuilder::Build(const Request& request, Line line, Done done) {
  if (running_) {
    return done(absl::FailedPreconditionError("an image build is already running; wait for it"));
  }
  auto run = std::make_shared<Run>();
  run->owner = this;
  run->line = std::move(line);
  run->done = std::move(done);
  run->self = run;

  std::vector<std::string> args = {script_, "--arch", request.arch, "--output", request.output_dir};
  if (!request.cache_dir.empty()) {
    args.push_back("--cache");
    args.push_back(request.cache_dir);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  uv_pipe_init(loop_.uv(), &run->out, 0);
  uv_pipe_init(loop_.uv(), &run->err, 0);
  run->out.data = run->err.data = run->process.data = run.get();
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&run->out);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&run->err);
  uv_process_options_t options{};
  options.file = argv[0];
  options.args = argv.data();
  options.stdio = stdio;
  options.stdio_count = 3;
  // Its own process group, so Cancel() reaches apt-get, mke2fs and the rest.
  options.flags = UV_PROCESS_DETACHED;
  options.exit_cb = [](uv_process_t* p, int64_t status, int sig) {
    auto* r = static_cast<Run*>(p->data);
    r->exit_status = status;
    r->term_signal = sig;
    r->exited = true;
  };
  auto on_close = [](uv_handle_t* h) {
    auto* r = static_cast<Run*>(h->data);
    if (--r->open_handles > 0) return;
    // All handles closed: the process has exited and both pipes are drained.
    absl::Status status = absl::OkStatus();
    if (r->term_signal != 0 || r->exit_status != 0) {
      std::string tail;
      for (const auto& l : r->err_tail) tail += "\n  " + l;
      status = absl::InternalError(absl::StrCat(
          "image build failed (", r->term_signal ? "signal " : "exit status ",
          r->term_signal ? r->term_signal : r->exit_status, "); its last output:", tail));
    }
    if (r->owner && r->owner->running_.get() == r) r->owner->running_.reset();
    if (r->done) r->done(status);
    r->self.reset();
  };
  run->open_handles = 3;
  int rc = uv_spawn(loop_.uv(), &run->process, &options);
  if (rc != 0) {
    run->exit_status = 127;
    run->err_tail.push_back(absl::StrCat("cannot run ", script_, ": ", uv_strerror(rc)));
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&run->process), reinterpret_cast<uv_handle_t*>(&run->out),
          reinterpret_cast<uv_handle_t*>(&run->err)}) {
      uv_close(h, on_close);
    }
    return;
  }
  running_ = run;
  spdlog::info("image build: {} --arch {} --output {}", script_, request.arch, request.output_dir);

  auto alloc = [](uv_handle_t*, size_t, uv_buf_t* buf) {
    static thread_local char storage[16 * 1024];
    *buf = uv_buf_init(storage, sizeof(storage));
  };
  static uv_close_cb close_cb = on_close;
  auto reader = [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* r = static_cast<Run*>(s->data);
    const bool is_out = s == reinterpret_cast<uv_stream_t*>(&r->out);
    if (n < 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(s), close_cb);
      // stdout and stderr both done: the process is ending, close it too.
      if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&r->out)) &&
          uv_is_closing(reinterpret_cast<uv_handle_t*>(&r->err))) {
        // Wait for exit_cb if it has not run yet; libuv delivers it soon.
        auto close_process = [](uv_handle_t* h) { uv_close(h, close_cb); };
        if (r->exited) {
          close_process(reinterpret_cast<uv_handle_t*>(&r->process));
        } else {
          r->process.exit_cb = [](uv_process_t* p, int64_t status, int sig) {
            auto* rr = static_cast<Run*>(p->data);
            rr->exit_status = status;
            rr->term_signal = sig;
            rr->exited = true;
            uv_close(reinterpret_cast<uv_handle_t*>(p), close_cb);
          };
        }
      }
      return;
    }
    std::string_view data(buf->base, static_cast<size_t>(n));
    EmitLines(is_out ? r->out_partial : r->err_partial, data, [r, is_out](std::string l) {
      if (!is_out) {
        r->err_tail.push_back(l);
        if (r->err_tail.size() > 8) r->err_tail.pop_front();
      }
      const bool phase = is_out && absl::StartsWith(l, "phase: ");
      if (r->owner && r->line) r->line(phase, phase ? l.substr(7) : l);
    });
  };
  uv_read_start(reinterpret_cast<uv_stream_t*>(&run->out), alloc, reader);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&run->err), alloc, reader);
}

}  // namespace cove::daemon
