#include "guest/agent/core/link_connection.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

// One read's worth; the decoder holds at most one partial frame beyond it.
constexpr size_t kReadChunk = size_t{256} * 1024;

}  // namespace

bool LinkConnection::Send(const link::Frame& frame) {
  if (out_.size() - out_offset_ + link::kHeaderSize + frame.payload.size() > kMaxWriteBuffer) {
    error_ = "host is not reading: write buffer over " + std::to_string(kMaxWriteBuffer) + " bytes";
    return false;
  }
  link::EncodeFrame(frame, out_);
  return true;
}

bool LinkConnection::SendEncoded(std::string_view bytes) {
  if (queued() + bytes.size() > kMaxWriteBuffer) {
    error_ = "host is not reading: write buffer over " + std::to_string(kMaxWriteBuffer) + " bytes";
    return false;
  }
  out_.append(bytes);
  return true;
}

bool LinkConnection::Flush() {
  while (wants_write()) {
    ssize_t n = write(fd_.get(), out_.data() + out_offset_, out_.size() - out_offset_);
    if (n > 0) {
      out_offset_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    error_ =
        n == 0 ? std::string("write returned 0") : std::string("write: ") + std::strerror(errno);
    return false;
  }
  // Reclaim the written prefix once it dominates, so the buffer stays within
  // the bound plus one frame.
  if (out_offset_ == out_.size()) {
    out_.clear();
    out_offset_ = 0;
  } else if (out_offset_ > out_.size() / 2) {
    out_.erase(0, out_offset_);
    out_offset_ = 0;
  }
  return true;
}

bool LinkConnection::FlushFor(int timeout_ms) {
  const int64_t deadline = ClockMs(CLOCK_MONOTONIC) + timeout_ms;
  while (true) {
    if (!Flush()) return false;
    if (!wants_write()) return true;
    int64_t left = deadline - ClockMs(CLOCK_MONOTONIC);
    if (left <= 0) return false;
    pollfd pfd{fd_.get(), POLLOUT, 0};
    int n = poll(&pfd, 1, static_cast<int>(left));
    if (n < 0 && errno != EINTR) return false;
    if (n > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
  }
}

bool LinkConnection::Read() {
  static char buf[kReadChunk];  // the agent is single-threaded
  ssize_t n = read(fd_.get(), buf, sizeof(buf));
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
    error_ = std::string("read: ") + std::strerror(errno);
    return false;
  }
  if (n == 0) {
    error_ = "host closed the channel (EOF)";
    return false;
  }
  if (!decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)))) {
    error_ = decoder_.error();
    return false;
  }
  return true;
}

}  // namespace cove::agent
