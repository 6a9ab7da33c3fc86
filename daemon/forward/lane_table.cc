#include "daemon/forward/lane_table.h"

#include "spdlog/spdlog.h"

namespace cove::daemon {

LaneTable::LaneTable(std::string machine, OpenFn open, CloseFn close,
                     std::function<void(uint16_t)> on_change)
    : machine_(std::move(machine)),
      open_(std::move(open)),
      close_(std::move(close)),
      on_change_(std::move(on_change)) {}

LaneTable::~LaneTable() {
  *alive_ = false;
  for (const auto& [guest_port, lane] : lanes_) {
    if (lane.host_port != 0 && close_) close_(lane.host_port);
  }
}

void LaneTable::Acquire(uint16_t guest_port) {
  if (!open_) return;
  Lane& lane = lanes_[guest_port];
  if (++lane.refs > 1) return;
  lane.generation = next_generation_++;
  std::weak_ptr<bool> alive = alive_;
  // The answer may come after this table is gone (the machine stopped) or
  // the lane is no longer wanted: then the new lane is closed at once.
  open_(guest_port, [this, alive, guest_port, generation = lane.generation,
                     close = close_](absl::StatusOr<uint16_t> port) {
    auto it = alive.expired() ? decltype(lanes_)::iterator{} : lanes_.find(guest_port);
    if (alive.expired() || it == lanes_.end() || it->second.generation != generation) {
      if (port.ok() && close) close(*port);
      return;
    }
    if (!port.ok()) {
      spdlog::warn("{}: no lane to guest port {} ({}); its connections go over the agent link",
                   machine_, guest_port, std::string(port.status().message()));
      return;
    }
    it->second.host_port = *port;
    spdlog::debug("{}: lane 127.0.0.1:{} to guest port {}", machine_, *port, guest_port);
    if (on_change_) on_change_(guest_port);
  });
}

void LaneTable::Release(uint16_t guest_port) {
  auto it = lanes_.find(guest_port);
  if (it == lanes_.end() || --it->second.refs > 0) return;
  if (it->second.host_port != 0 && close_) close_(it->second.host_port);
  lanes_.erase(it);
}

uint16_t LaneTable::HostPort(uint16_t guest_port) const {
  auto it = lanes_.find(guest_port);
  return it == lanes_.end() ? 0 : it->second.host_port;
}

}  // namespace cove::daemon
