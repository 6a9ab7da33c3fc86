// The guest side of agent_link_fuzz: the socket coved's AgentLink connects to
// (what qemu's virtio-serial chardev serves) and the guest end of one
// connection, held by a hostile guest that sends what it is told, reads what
// coved sends (unless told not to) and checks it.
//
// Threading: the fuzz target's thread, which is also coved's loop thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/link_frame.h"
#include "daemon/loop/event_loop.h"

namespace cove::fuzz {

// A listening unix socket in a fresh temporary directory.
class AgentSocket {
 public:
  AgentSocket();
  ~AgentSocket();
  AgentSocket(const AgentSocket&) = delete;
  AgentSocket& operator=(const AgentSocket&) = delete;

  const std::string& path() const { return path_; }
  // The next pending connection (non-blocking), or -1.
  int Accept() const;
  // Closes connections nobody took (coved reconnects on its own).
  void DropPending() const;

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
};

class GuestEnd {
 public:
  explicit GuestEnd(daemon::EventLoop& loop) : loop_(loop) {}
  ~GuestEnd() { Close(); }
  GuestEnd(const GuestEnd&) = delete;
  GuestEnd& operator=(const GuestEnd&) = delete;

  // Takes coved's connection, running its loop until it comes, and reads
  // its HostHello. False if either does not come.
  bool Accept(const AgentSocket& socket);
  void Close();

  // Sends as much as coved takes, running its loop while the socket is full;
  // stops when coved closed the connection.
  void Send(std::string_view bytes);
  // Runs coved's loop until it has read everything, has nothing left to do,
  // and what it sent has been read (when reading).
  void Settle();

  // Coved closed its end (or this end is closed).
  bool CovedClosed() const;
  bool reading() const { return reading_; }
  void set_reading(bool reading) { reading_ = reading; }
  // The session id of the last HostHello read; 0 before the first.
  uint64_t session() const { return session_; }
  // Since Accept(), the bytes sent were not a valid frame sequence.
  bool sent_invalid() const { return sent_invalid_; }
  // Bytes sent over every connection.
  size_t sent() const { return sent_; }

 private:
  // Reads what coved sent. True when there was some.
  bool Read();
  void OnCovedFrame(const link::Frame& frame);
  // Bytes sent that coved has not read yet.
  size_t Unread() const;

  daemon::EventLoop& loop_;
  int fd_ = -1;
  bool reading_ = true;
  uint64_t session_ = 0;
  link::FrameDecoder from_coved_;
  link::FrameDecoder to_coved_;  // a copy of what was sent, to know when it is invalid
  bool sent_invalid_ = false;
  size_t sent_ = 0;
};

}  // namespace cove::fuzz
