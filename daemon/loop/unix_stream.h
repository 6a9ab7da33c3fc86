// A client connection to a unix stream socket on the event loop (the QMP and
// agent sockets that qemu serves). Loop thread only.
//
// Ownership: the object owns its uv_pipe_t; destroying it closes the socket
// and no callback runs afterwards.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "daemon/loop/event_loop.h"

namespace cove::daemon {

class UnixStream {
 public:
  struct Callbacks {
    // Connected (status 0) or failed (libuv error code).
    std::function<void(int status)> on_connect;
    std::function<void(std::string_view bytes)> on_data;
    // The peer closed or an error happened; the stream is closed now.
    std::function<void(int status)> on_close;
    // Queued bytes were written (queued() went down); optional.
    std::function<void()> on_written;
  };

  // Bound on bytes queued for writing; Write() fails beyond it.
  static constexpr size_t kMaxQueuedWrite = 4 << 20;

  UnixStream(EventLoop& loop, Callbacks callbacks);
  ~UnixStream();
  UnixStream(const UnixStream&) = delete;
  UnixStream& operator=(const UnixStream&) = delete;

  void Connect(const std::string& path);
  // False if not connected or the write queue is over its bound.
  bool Write(std::string bytes);
  void Close();
  bool connected() const { return connected_; }
  size_t queued() const { return queued_; }

  // The libuv side of the connection (defined in the .cc).
  struct Handle;

 private:
  void Fail(int status);

  EventLoop& loop_;
  Callbacks callbacks_;
  Handle* handle_ = nullptr;  // owned; freed in its close callback
  bool connected_ = false;
  size_t queued_ = 0;
};

}  // namespace cove::daemon
