#include "guest/agent/runtime/services_reporter.h"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"
#include "guest/agent/core/unique_fd.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

}  // namespace

void ServicesReporter::Prepare(Host& host, PollSet& poll) {
  std::vector<int> pidfds;
  supervisor_.CollectPollFds(pidfds);
  for (int fd : pidfds) {
    poll.Add(fd, POLLIN, [this, fd](short revents) {
      if (revents & POLLIN) supervisor_.OnPidfdReady(fd, NowMs());
    });
  }
  poll.WakeBy(supervisor_.NextDeadlineMs());
}

void ServicesReporter::Tick(Host& host) {
  supervisor_.Tick(NowMs());
  MaybeTellRuntimeReady();
}

void ServicesReporter::MaybeTellRuntimeReady() {
  if (runtime_ready_told_ || runtime_ready_fifo_.empty()) return;
  if (!supervisor_.AllWantedReady()) return;
  runtime_ready_told_ = true;
  // Non-blocking: with no reader (it timed out, or an earlier agent of this
  // boot told it) there is nothing to tell.
  UniqueFd fifo(open(runtime_ready_fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (fifo.valid() && write(fifo.get(), "ready\n", 6) == 6) Log("runtime ready: boot work resumes");
}

}  // namespace cove::agent
