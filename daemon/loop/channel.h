// A bounded, closable queue that carries results from the loop thread to a
// gRPC handler thread (progress of a start, events of a watch).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include "absl/base/thread_annotations.h"

namespace cove::daemon {

template <typename T>
class Channel {
 public:
  explicit Channel(size_t capacity) : capacity_(capacity) {}

  // Any thread. False when closed or full (the item is dropped; the reader
  // learns of drops through dropped()). `final` items (an operation's end)
  // are queued even when full: dropping one would leave the reader waiting.
  bool Push(T item, bool final = false) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return false;
      if (items_.size() >= capacity_ && !final) {
        ++dropped_;
        return false;
      }
      items_.push_back(std::move(item));
    }
    cv_.notify_one();
    return true;
  }

  // Any thread. After Close, Pop drains what is queued, then returns nullopt.
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  // Waits up to `timeout`. nullopt on timeout or when closed and empty; use
  // closed() to tell them apart.
  std::optional<T> Pop(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_ && items_.empty();
  }

  size_t dropped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_;
  }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  size_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cove::daemon
