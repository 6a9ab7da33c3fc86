#include "guest/agent/core/poll_set.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <vector>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

struct Pipe {
  Pipe() { REQUIRE(pipe(fds) == 0); }
  ~Pipe() {
    close(fds[0]);
    close(fds[1]);
  }
  int fds[2];
};

}  // namespace

TEST_CASE("PollSet runs the handlers of ready fds, in the order they were added", "[agent][poll]") {
  Pipe a, b, idle;
  REQUIRE(write(b.fds[1], "x", 1) == 1);
  REQUIRE(write(a.fds[1], "x", 1) == 1);
  std::vector<char> ran;
  PollSet poll;
  poll.Add(idle.fds[0], POLLIN, [&](short) { ran.push_back('i'); });
  poll.Add(b.fds[0], POLLIN, [&](short revents) {
    CHECK((revents & POLLIN) != 0);
    ran.push_back('b');
  });
  poll.Add(a.fds[0], POLLIN, [&](short) { ran.push_back('a'); });
  poll.Add(a.fds[1], POLLOUT, nullptr);  // asked through revents() instead
  REQUIRE(poll.Wait(1000) == 3);
  CHECK((poll.revents(a.fds[1]) & POLLOUT) != 0);
  CHECK(poll.revents(idle.fds[0]) == 0);
  CHECK(poll.revents(-5) == 0);
  poll.Dispatch();
  CHECK(ran == std::vector<char>{'b', 'a'});
}

TEST_CASE("PollSet waits no longer than the earliest WakeBy", "[agent][poll]") {
  Pipe idle;
  PollSet poll;
  poll.Add(idle.fds[0], POLLIN, nullptr);
  const int64_t start = ClockMs(CLOCK_MONOTONIC);
  poll.WakeBy(INT64_MAX);  // nothing due: no effect
  poll.WakeBy(start + 50);
  poll.WakeBy(start + 5000);
  CHECK(poll.Wait(10000) == 0);
  const int64_t waited = ClockMs(CLOCK_MONOTONIC) - start;
  CHECK(waited >= 49);
  CHECK(waited < 5000);
  // A deadline already past: poll() only looks.
  PollSet late;
  late.WakeBy(start);
  const int64_t before = ClockMs(CLOCK_MONOTONIC);
  CHECK(late.Wait(10000) == 0);
  CHECK(ClockMs(CLOCK_MONOTONIC) - before < 5000);
}

}  // namespace cove::agent
