// The daemon's single event loop. One libuv loop thread owns every machine,
// agent link and (later) forward; nothing else touches their state. Other
// threads (gRPC handlers, the socket acceptor) hand work to it with Post() or
// Call() and never block it.
#pragma once

#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/errors.h"

namespace cove::daemon {

// Milliseconds on the monotonic clock: for deadlines and durations.
inline uint64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class EventLoop {
 public:
  // Bound on closures waiting to run; Post() refuses beyond it.
  static constexpr size_t kMaxPending = 4096;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Loop thread only.
  uv_loop_t* uv() { return &loop_; }

  // Runs the loop on the calling thread (which becomes the loop thread) until
  // Stop(). Pending closures still run before it returns.
  void Run();

  // Any thread. Makes Run() return once the closures already queued have
  // run; Post() refuses from now on.
  void Stop();

  // Any thread. Queues `fn` to run on the loop thread. False when the loop is
  // stopping or the queue is full; `fn` is then dropped unrun.
  bool Post(std::function<void()> fn);

  // Loop thread only. Runs `work` on libuv's thread pool (blocking file
  // work that must not hold up every other machine), then `done` on the loop
  // thread. `done` also runs, after `work`, when the loop is torn down.
  void Offload(std::function<void()> work, std::function<void()> done);

  // Any thread but the loop's. Runs `fn` on the loop and waits up to
  // `timeout` for its result.
  template <typename T>
  absl::StatusOr<T> Call(std::function<T()> fn,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));
  absl::Status Call(std::function<absl::Status()> fn,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

  bool InLoopThread() const { return std::this_thread::get_id() == loop_thread_; }

 private:
  static void OnAsync(uv_async_t* handle);
  void Drain();

  uv_loop_t loop_{};
  uv_async_t wakeup_{};
  std::thread::id loop_thread_;
  std::mutex mu_;
  std::deque<std::function<void()>> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

template <typename T>
absl::StatusOr<T> EventLoop::Call(std::function<T()> fn, std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> result = promise->get_future();
  if (!Post([promise, fn = std::move(fn)]() { promise->set_value(fn()); })) {
    return WithReason(absl::UnavailableError("coved is shutting down or overloaded; try again"),
                      cove::v1::SHUTTING_DOWN);
  }
  if (result.wait_for(timeout) != std::future_status::ready) {
    return absl::DeadlineExceededError("coved did not answer in time; see coved.log");
  }
  return result.get();
}

// A repeating or one-shot timer on the loop. Loop thread only.
class Timer {
 public:
  explicit Timer(EventLoop& loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // (Re)arms the timer: `fn` after `delay_ms`, then every `repeat_ms` if > 0.
  void Start(uint64_t delay_ms, std::function<void()> fn, uint64_t repeat_ms = 0);
  void Stop();
  // Armed and not yet fired (a one-shot timer is inactive in its callback).
  bool active() const;

 private:
  static void OnTimer(uv_timer_t* handle);
  uv_timer_t* handle_;  // freed in its close callback
  std::function<void()> fn_;
};

}  // namespace cove::daemon
