#include "daemon/machine/guest_forwards.h"

#include "absl/strings/str_cat.h"
#include "common/api_names.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

GuestForwards::GuestForwards(BootContext ctx, PortRegistry& ports, cove::v1::MachineSpec spec)
    : ctx_(std::move(ctx)), ports_registry_(ports), spec_(std::move(spec)) {}

GuestForwards::~GuestForwards() { OnNotRunning(); }

void GuestForwards::SetSpec(const cove::v1::MachineSpec& spec) {
  spec_ = spec;
  if (ports_) ports_->SetSpec(spec_);
}

void GuestForwards::Register(AgentLink& agent) {
  agent.Handle(cove::agent::v1::GuestToHost::kListeners,
               [this](const cove::agent::v1::GuestToHost& msg) { OnListeners(msg.listeners()); });
  agent.HandleOpen(cove::agent::v1::StreamOpen::kReverse,
                   [this](uint32_t id, const cove::agent::v1::StreamOpen& what) {
                     return OnReverseOpen(id, what);
                   });
}

void GuestForwards::OnListeners(const cove::agent::v1::Listeners& listeners) {
  listeners_ = listeners;
  if (listeners_.listeners_size() > kMaxGuestListeners) {
    spdlog::warn("{}: the guest reports {} listeners; forwarding the first {}", ctx_.machine,
                 listeners_.listeners_size(), kMaxGuestListeners);
    listeners_.mutable_listeners()->DeleteSubrange(
        kMaxGuestListeners, listeners_.listeners_size() - kMaxGuestListeners);
  }
  if (ports_) ports_->OnListeners(listeners_);
}

void GuestForwards::OnAgentHello() {
  if (ports_) ports_->OnLinkReady();
}

void GuestForwards::OnRunning() {
  OnNotRunning();
  AgentLink* agent = &ctx_.agent;
  VmInstance* vm = &ctx_.vm;
  PortForward::Env env{ctx_.loop, ctx_.machine, ports_registry_, [agent]() { return agent; }};
  env.open_lane = [vm](uint16_t guest_port, VmInstance::LaneDone done) {
    vm->OpenLane(guest_port, std::move(done));
  };
  env.close_lane = [vm](uint16_t host_port) { vm->CloseLane(host_port); };
  ports_ = std::make_unique<PortForwarder>(
      std::move(env), [this](const cove::v1::Forward& f) { OnForwardChange(f); });
  ports_->SetSpec(spec_);
  ports_->OnListeners(listeners_);
}

void GuestForwards::OnNotRunning() {
  if (!ports_) return;
  ports_->CloseAll();
  ports_.reset();
}

void GuestForwards::AddToView(cove::v1::Machine& out) const {
  if (!ports_) return;
  for (auto& f : ports_->List()) *out.add_forwards() = std::move(f);
}

void GuestForwards::OnForwardChange(const cove::v1::Forward& forward) {
  const ForwardKey key{forward.proto(), forward.host_ip(),
                       static_cast<uint16_t>(forward.host_port())};
  const std::string message = absl::StrCat(
      Describe(key), " -> guest ", Endpoint(forward.guest_ip(), forward.guest_port()), " ",
      ForwardStateName(forward.state()), forward.error().empty() ? "" : ": ", forward.error());
  if (forward.state() == cove::v1::FORWARD_STATE_CONFLICT ||
      forward.state() == cove::v1::FORWARD_STATE_FAILED) {
    spdlog::warn("{}: {}", ctx_.machine, message);
  } else {
    spdlog::info("{}: {}", ctx_.machine, message);
  }
  ctx_.publish(cove::v1::EVENT_KIND_FORWARD_CHANGED, message,
               [&forward](cove::v1::Event& event) { *event.mutable_forward() = forward; });
}

std::optional<StreamCallbacks> GuestForwards::OnReverseOpen(
    uint32_t id, const cove::agent::v1::StreamOpen& what) {
  for (const auto& r : spec_.reverse_sockets()) {
    if (r.name() != what.reverse()) continue;
    auto conn = StreamConn::ConnectUnix(ctx_.loop, r.host_path());
    if (!conn.ok()) {
      spdlog::warn("{}: reverse socket {}: {}", ctx_.machine, r.name(),
                   std::string(conn.status().message()));
      return std::nullopt;
    }
    StreamConn* raw = conn->get();
    reverse_conns_.push_back(*std::move(conn));
    std::weak_ptr<bool> alive = alive_;
    raw->set_on_done([this, alive, raw]() {
      ctx_.loop.Post([this, alive, raw]() {
        if (alive.expired()) return;
        std::erase_if(reverse_conns_, [raw](const auto& c) { return c.get() == raw; });
      });
    });
    return raw->Adopt(ctx_.agent, id);
  }
  return std::nullopt;
}

}  // namespace cove::daemon
