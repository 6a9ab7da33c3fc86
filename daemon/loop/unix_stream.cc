#include "daemon/loop/unix_stream.h"

#include <cstdlib>

namespace cove::daemon {

// The libuv handle lives apart from UnixStream so that it can outlive it
// until libuv's close callback; `owner` is cleared when UnixStream goes.
struct UnixStream::Handle {
  uv_pipe_t pipe{};
  uv_connect_t connect{};
  UnixStream* owner = nullptr;
  char buffer[256 * 1024];
};

namespace {

struct WriteReq {
  uv_write_t req{};
  std::string data;
  UnixStream::Handle* handle;
};

}  // namespace

UnixStream::UnixStream(EventLoop& loop, Callbacks callbacks)
    : loop_(loop), callbacks_(std::move(callbacks)) {}

UnixStream::~UnixStream() { Close(); }

void UnixStream::Connect(const std::string& path) {
  Close();
  handle_ = new Handle;
  handle_->owner = this;
  uv_pipe_init(loop_.uv(), &handle_->pipe, 0);
  handle_->pipe.data = handle_;
  handle_->connect.data = handle_;
  uv_pipe_connect(
      &handle_->connect, &handle_->pipe, path.c_str(), [](uv_connect_t* req, int status) {
        auto* h = static_cast<Handle*>(req->data);
        UnixStream* self = h->owner;
        if (self == nullptr) return;
        if (status != 0) {
          self->Close();
          if (self->callbacks_.on_connect) self->callbacks_.on_connect(status);
          return;
        }
        self->connected_ = true;
        uv_read_start(
            reinterpret_cast<uv_stream_t*>(&h->pipe),
            [](uv_handle_t* handle, size_t, uv_buf_t* buf) {
              auto* hh = static_cast<Handle*>(handle->data);
              *buf = uv_buf_init(hh->buffer, sizeof(hh->buffer));
            },
            [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
              auto* hh = static_cast<Handle*>(stream->data);
              UnixStream* s = hh->owner;
              if (s == nullptr) return;
              if (nread < 0) {
                s->Fail(static_cast<int>(nread));
                return;
              }
              if (nread > 0 && s->callbacks_.on_data) {
                s->callbacks_.on_data(std::string_view(buf->base, static_cast<size_t>(nread)));
              }
            });
        if (self->callbacks_.on_connect) self->callbacks_.on_connect(0);
      });
}

bool UnixStream::Write(std::string bytes) {
  if (!connected_ || handle_ == nullptr) return false;
  if (queued_ + bytes.size() > kMaxQueuedWrite) return false;
  auto* w = new WriteReq;
  w->data = std::move(bytes);
  w->handle = handle_;
  w->req.data = w;
  queued_ += w->data.size();
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&handle_->pipe), &buf, 1,
                    [](uv_write_t* req, int status) {
                      auto* wr = static_cast<WriteReq*>(req->data);
                      if (UnixStream* s = wr->handle->owner; s != nullptr) {
                        s->queued_ -= wr->data.size();
                        if (status != 0 && status != UV_ECANCELED) {
                          s->Fail(status);
                        } else if (status == 0 && s->callbacks_.on_written) {
                          s->callbacks_.on_written();
                        }
                      }
                      delete wr;
                    });
  if (rc != 0) {
    queued_ -= w->data.size();
    delete w;
    return false;
  }
  return true;
}

void UnixStream::Fail(int status) {
  Close();
  if (callbacks_.on_close) callbacks_.on_close(status);
}

void UnixStream::Close() {
  connected_ = false;
  queued_ = 0;
  if (handle_ == nullptr) return;
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->pipe),
           [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
  handle_ = nullptr;
}

}  // namespace cove::daemon
