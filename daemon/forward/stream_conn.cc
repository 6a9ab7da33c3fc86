#include "daemon/forward/stream_conn.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace cove::daemon {
namespace {

constexpr size_t kReadSize = kRelayReadSize;

struct WriteReq {
  uv_write_t req{};
  std::string data;
  StreamConn::Client* client;
};

}  // namespace

char* RelayReadBuffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kRelayReadSize]);
  return buffer.get();
}

struct StreamConn::Client {
  uv_stream_t* stream;
  StreamConn* owner;
  uv_shutdown_t shutdown{};
};

StreamConn::StreamConn(uv_stream_t* client) : client_(new Client{client, this}) {
  client->data = client_;
}

StreamConn::~StreamConn() {
  if (link_ != nullptr && id_ != 0) link_->ResetStream(id_, "connection closed on the host");
  client_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(client_->stream), [](uv_handle_t* h) {
    auto* c = static_cast<Client*>(h->data);
    std::free(c->stream);
    delete c;
  });
}

StreamCallbacks StreamConn::Callbacks() {
  return StreamCallbacks{
      .on_data = [this](std::string_view d) { OnStreamData(d); },
      .on_close_write = [this]() { OnStreamCloseWrite(); },
      .on_reset =
          [this](const std::string& why) {
            id_ = 0;  // already gone from the link
            Finish(why);
          },
      .on_writable = [this]() { StartReading(); },
  };
}

absl::StatusOr<std::unique_ptr<StreamConn>> StreamConn::ConnectUnix(EventLoop& loop,
                                                                    const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("connect ", path, ": ", std::strerror(err)));
  }
  auto* pipe = static_cast<uv_pipe_t*>(std::malloc(sizeof(uv_pipe_t)));
  uv_pipe_init(loop.uv(), pipe, 0);
  if (int rc = uv_pipe_open(pipe, fd); rc != 0) {
    ::close(fd);
    uv_close(reinterpret_cast<uv_handle_t*>(pipe), [](uv_handle_t* h) { std::free(h); });
    return absl::InternalError(absl::StrCat("uv_pipe_open: ", uv_strerror(rc)));
  }
  return std::make_unique<StreamConn>(reinterpret_cast<uv_stream_t*>(pipe));
}

bool StreamConn::Attach(AgentLink& link, const cove::agent::v1::StreamOpen& target) {
  if (finished_) return false;
  id_ = link.OpenStream(target, Callbacks());
  if (id_ == 0) return false;
  link_ = &link;
  StartReading();
  return true;
}

StreamCallbacks StreamConn::Adopt(AgentLink& link, uint32_t id) {
  link_ = &link;
  id_ = id;
  StartReading();
  return Callbacks();
}

void StreamConn::StartReading() {
  if (reading_ || finished_ || client_eof_ || id_ == 0) return;
  if (link_->StreamWritable(id_) < kReadSize) return;  // on_writable resumes
  reading_ = true;
  uv_read_start(
      client_->stream,
      [](uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(RelayReadBuffer(), kReadSize); },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* c = static_cast<Client*>(s->data);
        if (c->owner == nullptr) return;
        if (n > 0) {
          c->owner->OnClientData(buf->base, static_cast<size_t>(n));
        } else if (n == UV_EOF) {
          c->owner->OnClientEof();
        } else if (n < 0) {
          c->owner->Finish(std::string("host client: ") + uv_strerror(static_cast<int>(n)));
        }
      });
}

void StreamConn::OnClientData(const char* data, size_t n) {
  // Never refused: reading stops below before the stream's buffer could
  // overflow with one more read.
  link_->WriteStream(id_, std::string_view(data, n));
  if (link_->StreamWritable(id_) < kReadSize) {
    uv_read_stop(client_->stream);
    reading_ = false;
  }
}

void StreamConn::OnClientEof() {
  uv_read_stop(client_->stream);
  reading_ = false;
  client_eof_ = true;
  link_->CloseStreamWrite(id_);
  MaybeFinish();
}

void StreamConn::OnStreamData(std::string_view data) {
  if (writes_in_flight_ == 0) {
    // Nothing queued: hand the bytes to the client now, and queue (copy)
    // only what its socket does not take.
    uv_buf_t now = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
    const int n = uv_try_write(client_->stream, &now, 1);
    if (n < 0 && n != UV_EAGAIN) {
      Finish(std::string("host client: ") + uv_strerror(n));
      return;
    }
    if (n > 0) {
      link_->ConsumeStream(id_, static_cast<size_t>(n));
      data.remove_prefix(static_cast<size_t>(n));
    }
    if (data.empty()) return;
  }
  auto* w = new WriteReq;
  w->data.assign(data);
  w->client = client_;
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  writes_in_flight_++;
  int rc = uv_write(&w->req, client_->stream, &buf, 1, [](uv_write_t* req, int status) {
    auto* wr = static_cast<WriteReq*>(req->data);
    StreamConn* self = wr->client->owner;
    const size_t n = wr->data.size();
    delete wr;
    if (self == nullptr) return;
    self->writes_in_flight_--;
    if (status != 0) {
      self->Finish(std::string("host client: ") + uv_strerror(status));
      return;
    }
    if (self->id_ != 0) self->link_->ConsumeStream(self->id_, n);
    self->MaybeFinish();
  });
  if (rc != 0) {
    writes_in_flight_--;
    delete w;
    Finish(std::string("host client: ") + uv_strerror(rc));
  }
}

void StreamConn::OnStreamCloseWrite() {
  stream_eof_ = true;
  MaybeFinish();
}

void StreamConn::MaybeFinish() {
  if (finished_ || !stream_eof_ || writes_in_flight_ > 0) return;
  if (!client_eof_) {
    // The guest side is done talking; let the client read EOF but keep
    // reading what it still sends.
    if (client_->shutdown.data == nullptr) {
      client_->shutdown.data = client_;
      uv_shutdown(&client_->shutdown, client_->stream, [](uv_shutdown_t*, int) {});
    }
    return;
  }
  Finish("");
}

void StreamConn::Abort(const std::string& why) { Finish(why); }

void StreamConn::Finish(const std::string& why) {
  if (finished_) return;
  finished_ = true;
  end_reason_ = why;
  if (reading_) uv_read_stop(client_->stream);
  reading_ = false;
  if (link_ != nullptr && id_ != 0) {
    if (why.empty()) {
      link_->ForgetStream(id_);  // ended cleanly both ways: let the tail go out
    } else {
      link_->ResetStream(id_, why);
    }
  }
  id_ = 0;
  if (auto done = std::move(on_done_); done) done();
}

}  // namespace cove::daemon
