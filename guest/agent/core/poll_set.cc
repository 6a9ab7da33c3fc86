#include "guest/agent/core/poll_set.h"

#include <algorithm>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {

void PollSet::Add(int fd, short events, Handler on_ready) {
  fds_.push_back({fd, events, 0});
  handlers_.push_back(std::move(on_ready));
}

void PollSet::WakeBy(int64_t due_ms) { wake_ms_ = std::min(wake_ms_, due_ms); }

int PollSet::Wait(int max_ms) {
  int64_t timeout = max_ms;
  if (wake_ms_ != INT64_MAX) timeout = std::min(timeout, wake_ms_ - ClockMs(CLOCK_MONOTONIC));
  return poll(fds_.data(), fds_.size(), static_cast<int>(std::clamp<int64_t>(timeout, 0, max_ms)));
}

short PollSet::revents(int fd) const {
  for (const pollfd& p : fds_) {
    if (p.fd == fd) return p.revents;
  }
  return 0;
}

void PollSet::Dispatch() const {
  for (size_t i = 0; i < fds_.size(); i++) {
    if (fds_[i].revents != 0 && handlers_[i]) handlers_[i](fds_[i].revents);
  }
}

}  // namespace cove::agent
