#include "daemon/forward/port_forwarder.h"

#include <algorithm>
#include <utility>

#include "daemon/forward/port_forward.h"

namespace cove::daemon {

PortForwarder::PortForwarder(PortForwardEnv env,
                             std::function<void(const cove::v1::Forward&)> on_change)
    : env_(std::move(env)), on_change_(std::move(on_change)) {
  if (env_.open_lane) {
    lanes_ = std::make_unique<LaneTable>(env_.machine, env_.open_lane, env_.close_lane,
                                         [this](uint16_t guest_port) { OnLaneChange(guest_port); });
    env_.lanes = lanes_.get();
  }
}

void PortForwarder::OnLaneChange(uint16_t guest_port) {
  // The route shows in the forward: tell watchers it changed.
  for (auto& [key, f] : active_) {
    if (f->CanUseLane() && f->target().guest_port == guest_port && on_change_) {
      on_change_(f->Info());
    }
  }
}

PortForwarder::~PortForwarder() {
  *alive_ = false;
  on_change_ = nullptr;
  active_.clear();
  closing_.clear();
  lanes_.reset();  // after the forwards that hold lanes
}

void PortForwarder::SetSpec(const cove::v1::MachineSpec& spec) {
  spec_ = spec;
  Reconcile();
}

void PortForwarder::OnListeners(const cove::agent::v1::Listeners& listeners) {
  listeners_.assign(listeners.listeners().begin(), listeners.listeners().end());
  Reconcile();
}

void PortForwarder::OnLinkReady() {
  for (auto& [key, f] : active_) f->OnLinkReady();
}

void PortForwarder::Reconcile() {
  const std::map<ForwardKey, ForwardTarget> desired = DesiredForwards(spec_, listeners_);
  for (auto it = active_.begin(); it != active_.end();) {
    auto want = desired.find(it->first);
    if (want != desired.end() && want->second == it->second->target()) {
      ++it;
      continue;
    }
    std::unique_ptr<PortForward> f = std::move(it->second);
    it = active_.erase(it);
    PortForward* raw = f.get();
    closing_.push_back(std::move(f));
    raw->BeginClose();
  }
  for (const auto& [key, target] : desired) {
    if (active_.count(key)) continue;
    auto f = std::make_unique<PortForward>(
        env_, key, target, [this](const PortForward& changed) { OnForwardChange(changed); });
    PortForward* raw = f.get();
    active_.emplace(key, std::move(f));
    raw->Start();
  }
}

void PortForwarder::OnForwardChange(const PortForward& forward) {
  if (on_change_) on_change_(forward.Info());
  if (forward.state() != cove::v1::FORWARD_STATE_CLOSED || reap_posted_) return;
  // Not from inside the forward's own call stack.
  reap_posted_ = true;
  std::weak_ptr<bool> alive = alive_;
  env_.loop.Post([this, alive]() {
    if (!alive.expired()) Reap();
  });
}

void PortForwarder::Reap() {
  reap_posted_ = false;
  std::erase_if(closing_, [](const std::unique_ptr<PortForward>& f) {
    return f->state() == cove::v1::FORWARD_STATE_CLOSED;
  });
}

void PortForwarder::CloseAll() {
  std::vector<cove::v1::Forward> gone;
  for (auto& [key, f] : active_) gone.push_back(f->Info());
  for (auto& f : closing_) {
    if (f->state() != cove::v1::FORWARD_STATE_CLOSED) gone.push_back(f->Info());
  }
  active_.clear();
  closing_.clear();
  listeners_.clear();
  for (cove::v1::Forward& f : gone) {
    f.set_route(cove::v1::FORWARD_ROUTE_UNSPECIFIED);
    f.set_state(cove::v1::FORWARD_STATE_CLOSED);
    f.set_connections(0);
    if (on_change_) on_change_(f);
  }
}

std::vector<cove::v1::Forward> PortForwarder::List() const {
  std::vector<std::pair<ForwardKey, cove::v1::Forward>> all;
  for (const auto& [key, f] : active_) all.emplace_back(key, f->Info());
  for (const auto& f : closing_) {
    if (f->state() != cove::v1::FORWARD_STATE_CLOSED) all.emplace_back(f->key(), f->Info());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<cove::v1::Forward> out;
  for (auto& [key, f] : all) out.push_back(std::move(f));
  return out;
}

}  // namespace cove::daemon
