#include "daemon/machine/event_bus.h"

#include <google/protobuf/util/time_util.h>

namespace cove::daemon {

EventBus::Subscription EventBus::Subscribe() {
  std::lock_guard<std::mutex> lock(mu_);
  if (subs_.size() >= kMaxWatchers) return nullptr;
  auto sub = std::make_shared<Channel<cove::v1::Event>>(kWatcherQueue);
  subs_[sub.get()] = sub;
  return sub;
}

void EventBus::Unsubscribe(const Subscription& sub) {
  std::lock_guard<std::mutex> lock(mu_);
  subs_.erase(sub.get());
}

void EventBus::Publish(cove::v1::Event event) {
  std::lock_guard<std::mutex> lock(mu_);
  event.set_sequence(++sequence_);
  *event.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  for (auto& [ptr, sub] : subs_) sub->Push(event);
}

void EventBus::CloseAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [ptr, sub] : subs_) sub->Close();
  subs_.clear();
}

}  // namespace cove::daemon
