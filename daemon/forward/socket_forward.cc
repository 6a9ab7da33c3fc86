#include "daemon/forward/socket_forward.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

uint64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct SocketForward::Listener {
  uv_pipe_t pipe{};
  SocketForward* owner = nullptr;
};

SocketForward::SocketForward(EventLoop& loop, std::string name, std::string host_path,
                             cove::agent::v1::StreamOpen target, std::function<AgentLink*()> link)
    : loop_(loop),
      name_(std::move(name)),
      host_path_(std::move(host_path)),
      target_(std::move(target)),
      link_(std::move(link)),
      wait_timer_(loop) {}

SocketForward::~SocketForward() {
  *alive_ = false;
  waiting_.clear();
  conns_.clear();
  if (listener_ != nullptr) {
    listener_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_->pipe),
             [](uv_handle_t* h) { delete static_cast<Listener*>(h->data); });
    ::unlink(host_path_.c_str());
  }
}

absl::Status SocketForward::Open() {
  ::unlink(host_path_.c_str());
  listener_ = new Listener;
  listener_->owner = this;
  uv_pipe_init(loop_.uv(), &listener_->pipe, 0);
  listener_->pipe.data = listener_;
  // The socket is created 0600 from the start: no window where another user
  // could connect.
  const mode_t old_umask = ::umask(0177);
  int rc = uv_pipe_bind(&listener_->pipe, host_path_.c_str());
  ::umask(old_umask);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_->pipe), 128,
                   [](uv_stream_t* server, int status) {
                     auto* l = static_cast<Listener*>(server->data);
                     if (status == 0 && l->owner != nullptr) l->owner->OnConnection();
                   });
  }
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot listen on ", host_path_, ": ", uv_strerror(rc)));
  }
  return absl::OkStatus();
}

void SocketForward::OnConnection() {
  auto* client = static_cast<uv_pipe_t*>(std::malloc(sizeof(uv_pipe_t)));
  uv_pipe_init(loop_.uv(), client, 0);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_->pipe),
                reinterpret_cast<uv_stream_t*>(client)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), [](uv_handle_t* h) { std::free(h); });
    return;
  }
  conns_.push_back(std::make_unique<StreamConn>(reinterpret_cast<uv_stream_t*>(client)));
  StreamConn* conn = conns_.back().get();
  std::weak_ptr<bool> alive = alive_;
  conn->set_on_done([this, alive, conn]() {
    // Inside the connection's own call stack: destroy it on a later turn.
    loop_.Post([this, alive, conn]() {
      if (!alive.expired()) Remove(conn);
    });
  });
  if (conns_.size() > kMaxConnections) {
    spdlog::warn("{}: more than {} connections on {}; refusing one", name_, kMaxConnections,
                 host_path_);
    conn->Abort("too many connections");
    return;
  }
  AgentLink* link = link_();
  if (link != nullptr && link->ready() && conn->Attach(*link, target_)) return;
  // No agent session right now: wait for one, but not forever.
  waiting_.push_back(Pending{conn, NowMs() + kWaitForAgentMs});
  wait_timer_.Start(kWaitForAgentMs, [this]() { ExpireWaiting(); });
}

void SocketForward::OnLinkReady() {
  AgentLink* link = link_();
  if (link == nullptr) return;
  while (!waiting_.empty() && link->ready()) {
    StreamConn* conn = waiting_.front().conn;
    if (!conn->Attach(*link, target_)) break;
    waiting_.pop_front();
  }
  if (waiting_.empty()) wait_timer_.Stop();
}

void SocketForward::ExpireWaiting() {
  const uint64_t now = NowMs();
  while (!waiting_.empty() && waiting_.front().deadline_ms <= now) {
    StreamConn* conn = waiting_.front().conn;
    waiting_.pop_front();
    spdlog::info("{}: a connection to {} waited {} s for the guest agent; closing it", name_,
                 host_path_, kWaitForAgentMs / 1000);
    conn->Abort("the guest agent did not come back in time");
  }
  if (!waiting_.empty()) {
    wait_timer_.Start(waiting_.front().deadline_ms - now, [this]() { ExpireWaiting(); });
  }
}

void SocketForward::Remove(StreamConn* conn) {
  waiting_.remove_if([conn](const Pending& p) { return p.conn == conn; });
  conns_.remove_if([conn](const std::unique_ptr<StreamConn>& c) { return c.get() == conn; });
}

}  // namespace cove::daemon
