// One round of the agent's poll() loop: the fds to wait on, each with the
// handler of the part that owns it, and the earliest time any part has
// something to do. Owners add their own fds, so nobody keeps indexes in step.
//
// Threading: built, waited on and dispatched by the agent's loop thread, one
// round at a time; handlers may capture references that outlive the round.
#pragma once

#include <poll.h>

#include <climits>
#include <cstdint>
#include <functional>
#include <vector>

namespace cove::agent {

class PollSet {
 public:
  // Told the fd's revents (never 0).
  using Handler = std::function<void(short revents)>;

  // Waits for `events` on `fd`; `on_ready` (may be null: the caller asks
  // revents() instead) runs in Dispatch() when poll() reported anything.
  void Add(int fd, short events, Handler on_ready);
  // Something is due at `due_ms` (CLOCK_MONOTONIC); INT64_MAX: nothing.
  void WakeBy(int64_t due_ms);

  // poll() until an fd is ready or the earliest WakeBy, at most `max_ms`.
  // Returns what poll() did: the count of ready fds, or -1 with errno set.
  int Wait(int max_ms);
  // What poll() reported for `fd` (0 if it was not added).
  short revents(int fd) const;
  // Runs the handlers of the fds with events, in the order they were added.
  void Dispatch() const;

 private:
  std::vector<pollfd> fds_;
  std::vector<Handler> handlers_;  // one per fd
  int64_t wake_ms_ = INT64_MAX;
};

}  // namespace cove::agent
