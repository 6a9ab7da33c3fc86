// One open agent channel: bytes in through a FrameDecoder, frames out through
// a bounded write buffer. It holds no protocol policy; the Agent decides what
// a frame means and what to do when the connection fails.
//
// Threading: used by the agent's one thread only.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "common/link_frame.h"
#include "guest/agent/core/unique_fd.h"

namespace cove::agent {

class LinkConnection {
 public:
  // A host that stops reading cannot make the agent grow without bound: past
  // this, Send() fails and the caller drops the link.
  static constexpr size_t kMaxWriteBuffer = 1024 * 1024;

  // Takes a non-blocking fd.
  explicit LinkConnection(UniqueFd fd) : fd_(std::move(fd)) {}

  int fd() const { return fd_.get(); }

  // Queues a frame; returns false when that would exceed kMaxWriteBuffer.
  bool Send(const link::Frame& frame);
  // Queues encoded frames (from StreamMux::TakeOutput); same bound.
  bool SendEncoded(std::string_view bytes);
  bool wants_write() const { return out_offset_ < out_.size(); }
  size_t queued() const { return out_.size() - out_offset_; }

  // Writes what the fd takes now without waiting. Returns false on a write
  // error (see error()); a full channel is not an error.
  bool Flush();
  // Like Flush() but waits up to `timeout_ms` for the buffer to drain.
  // Returns true when everything was written.
  bool FlushFor(int timeout_ms);

  // Reads what is available once and decodes it. Returns false on EOF, a
  // read error or an invalid frame stream (see error()).
  bool Read();
  std::optional<link::Frame> Next() { return decoder_.Next(); }

  // Why the connection failed, for the log; empty while it is fine.
  const std::string& error() const { return error_; }

 private:
  UniqueFd fd_;
  link::FrameDecoder decoder_;
  std::string out_;
  size_t out_offset_ = 0;
  std::string error_;
};

}  // namespace cove::agent
