#include "daemon/forward/lane_conn.h"

#include <cstdlib>
#include <memory>

#include "daemon/forward/stream_conn.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

// Bytes queued toward one end before the other end is no longer read.
constexpr size_t kMaxQueued = 1024 * 1024;

struct WriteReq {
  uv_write_t req{};
  std::string data;
  LaneConn::End* to;
};

}  // namespace

struct LaneConn::End {
  uv_stream_t* stream;
  LaneConn* owner;
  End* peer = nullptr;
  bool reading = false;
  bool eof = false;   // read EOF from this end
  bool shut = false;  // its write side is shut (the other end's EOF passed on)
  size_t queued = 0;  // bytes on their way to this end
  uv_shutdown_t shutdown{};
  uv_connect_t connect{};
};

LaneConn::LaneConn(EventLoop& loop, uv_stream_t* client, uint16_t lane_port,
                   std::function<void(uv_stream_t*)> fallback)
    : client_(new End{client, this}), fallback_(std::move(fallback)) {
  client->data = client_;
  auto* tcp = static_cast<uv_tcp_t*>(std::malloc(sizeof(uv_tcp_t)));
  uv_tcp_init(loop.uv(), tcp);
  lane_ = new End{reinterpret_cast<uv_stream_t*>(tcp), this};
  tcp->data = lane_;
  client_->peer = lane_;
  lane_->peer = client_;
  lane_->connect.data = lane_;
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", lane_port, &addr);
  const int rc = uv_tcp_connect(&lane_->connect, tcp, reinterpret_cast<const sockaddr*>(&addr),
                                [](uv_connect_t* req, int status) {
                                  auto* end = static_cast<End*>(req->data);
                                  if (end->owner != nullptr) end->owner->OnConnected(status);
                                });
  if (rc != 0) {
    // Not from inside the constructor: the owner has not set on_done yet.
    loop.Post([this, alive = std::weak_ptr<bool>(alive_), rc]() {
      if (!alive.expired()) OnConnected(rc);
    });
  }
}

LaneConn::~LaneConn() {
  *alive_ = false;
  on_done_ = nullptr;
  Finish("the forward closed");
}

void LaneConn::OnConnected(int status) {
  if (finished_) return;
  if (status != 0) {
    // The lane is gone (qemu removed it, or is going away): the agent link
    // carries this connection instead. Nothing was read from the client.
    spdlog::debug("lane connect failed ({}); relaying over the agent link", uv_strerror(status));
    uv_stream_t* client = client_->stream;
    delete client_;
    client_ = nullptr;
    lane_->peer = nullptr;
    if (fallback_) fallback_(client);
    Finish("");
    return;
  }
  connected_ = true;
  uv_tcp_nodelay(reinterpret_cast<uv_tcp_t*>(lane_->stream), 1);
  StartReading(client_);
  StartReading(lane_);
}

void LaneConn::StartReading(End* end) {
  if (finished_ || end->reading || end->eof) return;
  end->reading = true;
  uv_read_start(
      end->stream,
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        *buf = uv_buf_init(RelayReadBuffer(), kRelayReadSize);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* e = static_cast<End*>(s->data);
        if (e->owner != nullptr && n != 0) e->owner->OnRead(e, n, buf->base);
      });
}

void LaneConn::OnRead(End* from, ssize_t n, const char* data) {
  End* to = from->peer;
  if (n == UV_EOF) {
    uv_read_stop(from->stream);
    from->reading = false;
    from->eof = true;
    ShutIfDrained(to);
    MaybeDone();
    return;
  }
  if (n < 0) {
    Finish(std::string(from == client_ ? "host client: " : "lane: ") +
           uv_strerror(static_cast<int>(n)));
    return;
  }
  std::string_view bytes(data, static_cast<size_t>(n));
  if (to->queued == 0) {
    uv_buf_t now = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(n));
    const int written = uv_try_write(to->stream, &now, 1);
    if (written < 0 && written != UV_EAGAIN) {
      Finish(std::string(to == client_ ? "host client: " : "lane: ") + uv_strerror(written));
      return;
    }
    if (written > 0) bytes.remove_prefix(static_cast<size_t>(written));
    if (bytes.empty()) return;
  }
  auto* w = new WriteReq;
  w->data.assign(bytes);
  w->to = to;
  w->req.data = w;
  to->queued += w->data.size();
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  const int rc = uv_write(&w->req, to->stream, &buf, 1, [](uv_write_t* req, int status) {
    auto* wr = static_cast<WriteReq*>(req->data);
    End* end = wr->to;
    const size_t size = wr->data.size();
    delete wr;
    if (end->owner != nullptr) end->owner->OnWritten(end, size, status);
  });
  if (rc != 0) {
    to->queued -= w->data.size();
    delete w;
    Finish(std::string(to == client_ ? "host client: " : "lane: ") + uv_strerror(rc));
    return;
  }
  if (to->queued > kMaxQueued) {
    uv_read_stop(from->stream);  // OnWritten resumes
    from->reading = false;
  }
}

void LaneConn::OnWritten(End* to, size_t n, int status) {
  to->queued -= n;
  if (finished_) return;
  if (status != 0) {
    Finish(std::string(to == client_ ? "host client: " : "lane: ") + uv_strerror(status));
    return;
  }
  if (to->queued <= kMaxQueued / 2) StartReading(to->peer);
  ShutIfDrained(to);
  MaybeDone();
}

void LaneConn::ShutIfDrained(End* to) {
  if (finished_ || to->shut || to->queued > 0 || !to->peer->eof) return;
  to->shut = true;
  to->shutdown.data = to;
  uv_shutdown(&to->shutdown, to->stream, [](uv_shutdown_t*, int) {});
}

void LaneConn::MaybeDone() {
  if (finished_ || client_ == nullptr) return;
  if (client_->eof && lane_->eof && client_->shut && lane_->shut) Finish("");
}

void LaneConn::Finish(const std::string& why) {
  if (finished_) return;
  finished_ = true;
  if (!why.empty() && connected_) spdlog::debug("lane connection ended: {}", why);
  for (End* end : {client_, lane_}) {
    if (end == nullptr) continue;
    end->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(end->stream), [](uv_handle_t* h) {
      auto* e = static_cast<End*>(h->data);
      std::free(e->stream);
      delete e;
    });
  }
  client_ = nullptr;
  lane_ = nullptr;
  if (auto done = std::move(on_done_); done) done();
}

}  // namespace cove::daemon
