#include "daemon/loop/event_loop.h"

#include <cstdlib>

namespace cove::daemon {

EventLoop::EventLoop() {
  if (uv_loop_init(&loop_) != 0) std::abort();
  uv_async_init(&loop_, &wakeup_, &EventLoop::OnAsync);
  wakeup_.data = this;
  loop_thread_ = std::this_thread::get_id();
}

EventLoop::~EventLoop() {
  uv_close(reinterpret_cast<uv_handle_t*>(&wakeup_), nullptr);
  // Let close callbacks of every handle run, then close the loop.
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

void EventLoop::Run() {
  loop_thread_ = std::this_thread::get_id();
  uv_run(&loop_, UV_RUN_DEFAULT);
  Drain();
}

void EventLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  uv_async_send(&wakeup_);
}

bool EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || pending_.size() >= kMaxPending) return false;
    pending_.push_back(std::move(fn));
  }
  uv_async_send(&wakeup_);
  return true;
}

void EventLoop::Offload(std::function<void()> work, std::function<void()> done) {
  struct Job {
    uv_work_t req;
    std::function<void()> work, done;
  };
  auto* job = new Job{{}, std::move(work), std::move(done)};
  job->req.data = job;
  uv_queue_work(
      &loop_, &job->req, [](uv_work_t* req) { static_cast<Job*>(req->data)->work(); },
      [](uv_work_t* req, int) {
        auto* job = static_cast<Job*>(req->data);
        job->done();
        delete job;
      });
}

absl::Status EventLoop::Call(std::function<absl::Status()> fn, std::chrono::milliseconds timeout) {
  absl::StatusOr<absl::Status> r = Call<absl::Status>(std::move(fn), timeout);
  if (!r.ok()) return r.status();
  return *r;
}

void EventLoop::OnAsync(uv_async_t* handle) { static_cast<EventLoop*>(handle->data)->Drain(); }

void EventLoop::Drain() {
  std::deque<std::function<void()>> batch;
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(pending_);
    stopping = stopping_;
  }
  for (auto& fn : batch) fn();
  if (stopping) uv_stop(&loop_);
}

Timer::Timer(EventLoop& loop) : handle_(new uv_timer_t) {
  uv_timer_init(loop.uv(), handle_);
  handle_->data = this;
}

Timer::~Timer() {
  uv_timer_stop(handle_);
  handle_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

void Timer::Start(uint64_t delay_ms, std::function<void()> fn, uint64_t repeat_ms) {
  fn_ = std::move(fn);
  uv_timer_start(handle_, &Timer::OnTimer, delay_ms, repeat_ms);
}

void Timer::Stop() { uv_timer_stop(handle_); }

bool Timer::active() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(handle_)) != 0;
}

void Timer::OnTimer(uv_timer_t* handle) {
  auto* self = static_cast<Timer*>(handle->data);
  if (self == nullptr) return;
  // Copy: the callback may re-arm or destroy this timer.
  auto fn = self->fn_;
  fn();
}

}  // namespace cove::daemon
