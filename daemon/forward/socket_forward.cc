#include "daemon/forward/socket_forward.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

struct SocketForward::Listener {
  uv_pipe_t pipe{};
  SocketForward* owner = nullptr;
};

SocketForward::SocketForward(EventLoop& loop, std::string name, std::string host_path,
                             cove::agent::v1::StreamOpen target, std::function<AgentLink*()> link)
    : loop_(loop),
      host_path_(std::move(host_path)),
      conns_(loop, absl::StrCat(name, " (", host_path_, ")"), std::move(target), std::move(link),
             kMaxConnections) {}

SocketForward::~SocketForward() {
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
  conns_.Accept(
      reinterpret_cast<uv_stream_t*>(&listener_->pipe), sizeof(uv_pipe_t),
      [this](uv_stream_t* s) { uv_pipe_init(loop_.uv(), reinterpret_cast<uv_pipe_t*>(s), 0); });
}

}  // namespace cove::daemon
