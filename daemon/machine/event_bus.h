// Fan-out of machine events to watchers (Machines.Watch streams). The loop
// thread publishes; gRPC threads subscribe and read their own bounded
// channel, so a slow watcher loses its own events (and sees a gap in
// Event.sequence) but never slows the loop or other watchers.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "cove/v1/machines.pb.h"
#include "daemon/loop/channel.h"

namespace cove::daemon {

class EventBus {
 public:
  using Subscription = std::shared_ptr<Channel<cove::v1::Event>>;
  static constexpr size_t kWatcherQueue = 1024;
  static constexpr size_t kMaxWatchers = 256;

  // Any thread. nullptr when there are kMaxWatchers already.
  Subscription Subscribe();
  void Unsubscribe(const Subscription& sub);

  // Loop thread. Stamps sequence and time, then delivers.
  void Publish(cove::v1::Event event);

  // Closes every subscription (daemon shutdown).
  void CloseAll();

 private:
  std::mutex mu_;
  std::map<Channel<cove::v1::Event>*, Subscription> subs_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace cove::daemon
