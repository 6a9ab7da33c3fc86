#include "daemon/forward/conn_set.h"

#include <chrono>
#include <cstdlib>

#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {}  // namespace

ConnSet::ConnSet(EventLoop& loop, std::string what, cove::agent::v1::StreamOpen target,
                 std::function<AgentLink*()> link, size_t max_connections,
                 std::function<void()> on_count, std::function<uint16_t()> lane)
    : loop_(loop),
      what_(std::move(what)),
      target_(std::move(target)),
      link_(std::move(link)),
      max_connections_(max_connections),
      on_count_(std::move(on_count)),
      lane_(std::move(lane)),
      wait_timer_(loop) {}

ConnSet::~ConnSet() {
  *alive_ = false;
  waiting_.clear();
  conns_.clear();
  lane_conns_.clear();
}

void ConnSet::Accept(uv_stream_t* server, size_t handle_size,
                     const std::function<void(uv_stream_t*)>& init) {
  auto* client = static_cast<uv_stream_t*>(std::malloc(handle_size));
  init(client);
  if (uv_accept(server, client) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), [](uv_handle_t* h) { std::free(h); });
    return;
  }
  const uint16_t lane = lane_ ? lane_() : 0;
  if (lane == 0 || lane_conns_.size() >= kMaxLaneConnections || size() >= max_connections_) {
    Relay(client);  // which refuses it when there are too many
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  lane_conns_.push_back(
      std::make_unique<LaneConn>(loop_, client, lane, [this, alive](uv_stream_t* c) {
        if (!alive.expired()) Relay(c);
      }));
  LaneConn* conn = lane_conns_.back().get();
  conn->set_on_done([this, alive, conn]() {
    loop_.Post([this, alive, conn]() {
      if (!alive.expired()) Remove(conn);
    });
  });
}

void ConnSet::Relay(uv_stream_t* client) {
  conns_.push_back(std::make_unique<StreamConn>(client));
  StreamConn* conn = conns_.back().get();
  std::weak_ptr<bool> alive = alive_;
  conn->set_on_done([this, alive, conn]() {
    // Inside the connection's own call stack: destroy it on a later turn.
    loop_.Post([this, alive, conn]() {
      if (!alive.expired()) Remove(conn);
    });
  });
  if (size() > max_connections_) {
    spdlog::warn("{}: more than {} connections; refusing one", what_, max_connections_);
    conn->Abort("too many connections");
    return;
  }
  AgentLink* link = link_();
  if (link != nullptr && link->ready() && conn->Attach(*link, target_)) return;
  // No agent session right now: wait for one, but not forever.
  waiting_.push_back(Pending{conn, SteadyNowMs() + kWaitForAgentMs});
  wait_timer_.Start(kWaitForAgentMs, [this]() { ExpireWaiting(); });
}

void ConnSet::OnLinkReady() {
  AgentLink* link = link_();
  if (link == nullptr) return;
  while (!waiting_.empty() && link->ready()) {
    StreamConn* conn = waiting_.front().conn;
    if (!conn->Attach(*link, target_)) break;
    waiting_.pop_front();
  }
  if (waiting_.empty()) wait_timer_.Stop();
}

void ConnSet::AbortAll(const std::string& why) {
  waiting_.clear();
  for (auto& c : conns_) c->Abort(why);
  for (auto& c : lane_conns_) c->Abort(why);
}

void ConnSet::ExpireWaiting() {
  const uint64_t now = SteadyNowMs();
  while (!waiting_.empty() && waiting_.front().deadline_ms <= now) {
    StreamConn* conn = waiting_.front().conn;
    waiting_.pop_front();
    spdlog::info("{}: a connection waited {} s for the guest agent; closing it", what_,
                 kWaitForAgentMs / 1000);
    conn->Abort("the guest agent did not come back in time");
  }
  if (!waiting_.empty()) {
    wait_timer_.Start(waiting_.front().deadline_ms - now, [this]() { ExpireWaiting(); });
  }
}

void ConnSet::Remove(LaneConn* conn) {
  lane_conns_.remove_if([conn](const std::unique_ptr<LaneConn>& c) { return c.get() == conn; });
  if (on_count_) on_count_();
}

void ConnSet::Remove(StreamConn* conn) {
  waiting_.remove_if([conn](const Pending& p) { return p.conn == conn; });
  conns_.remove_if([conn](const std::unique_ptr<StreamConn>& c) { return c.get() == conn; });
  if (on_count_) on_count_();
}

}  // namespace cove::daemon
