#include "guest/agent/streams/relay.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace cove::agent {
namespace {

constexpr size_t kReadChunk = 256 * 1024;

}  // namespace

Relay::Relay(link::StreamMux& mux, uint32_t id, Kind kind, UniqueFd read_fd, UniqueFd write_fd,
             bool connecting)
    : mux_(mux),
      id_(id),
      kind_(kind),
      read_fd_(std::move(read_fd)),
      write_fd_(std::move(write_fd)),
      connecting_(connecting) {
  if (!read_fd_.valid()) read_done_ = true;
}

int Relay::PollReadFd() const {
  if (dead_ || connecting_ || read_done_ || mux_.WritableBytes(id_) == 0) return -1;
  return read_fd_.get();
}

int Relay::PollWriteFd() const {
  if (dead_) return -1;
  if (connecting_) return read_fd_.get();
  if (inbox_off_ >= inbox_.size() || write_shut_) return -1;
  if (kind_ == Kind::kDatagram) {
    // Only a whole datagram waits for the socket; a partial one waits for
    // the stream (polling for it would spin).
    const size_t left = inbox_.size() - inbox_off_;
    const auto* p = reinterpret_cast<const unsigned char*>(inbox_.data() + inbox_off_);
    if (left < 2 || left < 2 + ((size_t{p[0]} << 8) | p[1])) return -1;
  }
  return write_fd().get();
}

void Relay::OnReadable() {
  if (PollReadFd() < 0) return;
  if (kind_ == Kind::kDatagram) {
    ReadDatagram();
    return;
  }
  const size_t room = std::min(kReadChunk, mux_.WritableBytes(id_));
  static char buf[kReadChunk];  // the agent is single-threaded
  ssize_t n = read(read_fd_.get(), buf, room);
  if (n > 0) {
    mux_.Write(id_, std::string_view(buf, static_cast<size_t>(n)));
    return;
  }
  if (n < 0 && errno == EINTR) return;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    if (end_at_drain_) FinishRead();
    return;
  }
  // EOF; EIO is how a pty master says its last slave closed.
  if (n == 0 || (kind_ == Kind::kPty && errno == EIO)) {
    FinishRead();
    return;
  }
  Fail(std::string("read: ") + std::strerror(errno));
}

void Relay::OnWritable() {
  if (dead_) return;
  if (connecting_) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(read_fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      Fail(std::string("connect: ") + std::strerror(err));
      return;
    }
    connecting_ = false;
  }
  if (kind_ == Kind::kDatagram) {
    WriteDatagrams();
    return;
  }
  size_t written = 0;
  if (!write_shut_ && !WriteOut(std::string_view(inbox_).substr(inbox_off_), written)) return;
  inbox_off_ += written;
  if (inbox_off_ == inbox_.size()) {
    inbox_.clear();
    inbox_off_ = 0;
  }
  if (written > 0) mux_.Consumed(id_, written);
  if (peer_eof_ && inbox_.empty()) ShutWrite();
}

bool Relay::WriteOut(std::string_view bytes, size_t& written) {
  written = 0;
  while (written < bytes.size()) {
    const ssize_t n = write(write_fd().get(), bytes.data() + written, bytes.size() - written);
    if (n > 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    // The local reader is gone (EPIPE): nothing more can be delivered.
    Fail(std::string("write: ") + std::strerror(errno));
    return false;
  }
  return true;
}

void Relay::OnData(std::string_view data) {
  if (dead_ || write_shut_ || !write_fd().valid()) {
    // Nowhere to put it; still let the sender go on (e.g. stdin for a
    // process that never reads it is simply dropped after it exits).
    mux_.Consumed(id_, data.size());
    return;
  }
  if (inbox_off_ == inbox_.size() && !connecting_ && kind_ != Kind::kDatagram) {
    // Nothing queued: write straight from the frame and keep only what the
    // fd does not take now.
    size_t done = 0;
    if (!WriteOut(data, done)) return;
    if (done > 0) mux_.Consumed(id_, done);
    inbox_.assign(data.substr(done));
    inbox_off_ = 0;
    return;
  }
  inbox_.append(data);
  if (!connecting_) OnWritable();
}

void Relay::OnPeerClose() {
  peer_eof_ = true;
  if (!connecting_ && inbox_.empty()) ShutWrite();
}

bool Relay::Finished() const {
  return dead_ || (!mux_.IsOpen(id_) && (inbox_.empty() || write_shut_));
}

void Relay::Fail(const std::string& reason) {
  if (dead_) return;
  dead_ = true;
  read_done_ = true;
  mux_.Reset(id_, reason);
  read_fd_.reset();
  write_fd_.reset();
}

void Relay::FinishRead() {
  if (read_done_) return;
  read_done_ = true;
  mux_.CloseWrite(id_);
  if (kind_ == Kind::kPipes) read_fd_.reset();
}

void Relay::ShutWrite() {
  if (write_shut_) return;
  write_shut_ = true;
  switch (kind_) {
    case Kind::kSocket:
      shutdown(read_fd_.get(), SHUT_WR);
      break;
    case Kind::kPipes:
      write_fd_.reset();
      break;
    case Kind::kPty:
      // A terminal has no half-close; the shell sees EOF when the user types
      // it (^D travels as a byte).
      break;
    case Kind::kDatagram:
      break;  // nothing to tell a UDP peer
  }
}

void Relay::ReadDatagram() {
  static char buf[2 + 65535];  // the agent is single-threaded
  const ssize_t n = recv(read_fd_.get(), buf + 2, sizeof(buf) - 2, 0);
  if (n < 0) {
    // ECONNREFUSED: an earlier datagram met a closed port (ICMP). The server
    // may come back; the session stays.
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED) return;
    Fail(std::string("recv: ") + std::strerror(errno));
    return;
  }
  const size_t size = static_cast<size_t>(n);
  if (mux_.WritableBytes(id_) < size + 2) return;  // no room: dropped, as UDP does
  buf[0] = static_cast<char>(size >> 8);
  buf[1] = static_cast<char>(size & 0xff);
  mux_.Write(id_, std::string_view(buf, size + 2));
}

void Relay::WriteDatagrams() {
  size_t consumed = 0;
  while (inbox_.size() - inbox_off_ >= 2) {
    const auto* p = reinterpret_cast<const unsigned char*>(inbox_.data() + inbox_off_);
    const size_t size = (size_t{p[0]} << 8) | p[1];
    if (inbox_.size() - inbox_off_ < 2 + size) break;  // the rest is still coming
    const ssize_t n = send(read_fd_.get(), p + 2, size, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // POLLOUT resumes
    // Any other failure (ECONNREFUSED from an earlier ICMP, EMSGSIZE) loses
    // this datagram only.
    inbox_off_ += 2 + size;
    consumed += 2 + size;
  }
  if (inbox_off_ == inbox_.size()) {
    inbox_.clear();
    inbox_off_ = 0;
  }
  if (consumed > 0) mux_.Consumed(id_, consumed);
}

}  // namespace cove::agent
