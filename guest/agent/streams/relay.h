// The guest end of one byte stream: moves bytes between the stream (through
// StreamMux, with its flow control) and local file descriptors: a socket, a
// pipe pair or a pty master.
//
// Backpressure both ways: the relay reads its fd only while the stream can
// take more (StreamMux::WritableBytes), and reports bytes to the mux as
// consumed only once they were written to the fd, so a slow local reader
// holds back its own stream and nothing else.
//
// Threading: the agent's one thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/stream_mux.h"
#include "guest/agent/core/unique_fd.h"

namespace cove::agent {

class Relay {
 public:
  enum class Kind {
    kSocket,  // one fd both ways; half-close is shutdown(SHUT_WR)
    kPipes,   // separate fds; half-close closes the write fd
    kPty,     // one fd; no half-close, EIO on read means the terminal closed
    // A connected UDP socket. The stream carries datagrams, each a 2-byte
    // big-endian length and the bytes (NetConnect in agent.proto). A
    // datagram that finds no room in the stream is dropped, as UDP would.
    kDatagram,
  };

  // Either fd may be invalid (a stream that only reads or only writes).
  // `connecting`: a non-blocking connect is in progress on read_fd.
  Relay(link::StreamMux& mux, uint32_t id, Kind kind, UniqueFd read_fd, UniqueFd write_fd,
        bool connecting = false);

  uint32_t id() const { return id_; }
  // The fd to poll for input, or -1 when no read is wanted now.
  int PollReadFd() const;
  // The fd to poll for output, or -1 when nothing waits to be written.
  int PollWriteFd() const;
  // The pty master, for resizes (-1 for other kinds).
  int pty_fd() const { return kind_ == Kind::kPty ? write_fd().get() : -1; }

  void OnReadable();
  void OnWritable();
  // Bytes and half-close from the peer (StreamMux callbacks).
  void OnData(std::string_view data);
  void OnPeerClose();

  // The process behind this relay exited: once its fd has nothing more to
  // read right now, that is the end of its output (a background child that
  // keeps the pipe open does not hold the stream).
  void EndAtDrain() { end_at_drain_ = true; }
  // Reading is over (EOF sent as CLOSE_WRITE, or the relay failed).
  bool read_done() const { return read_done_; }
  // Nothing left to do: the mux forgot the stream and all input was written.
  bool Finished() const;
  // Marks the relay dead after a local failure and resets the stream.
  void Fail(const std::string& reason);

 private:
  const UniqueFd& write_fd() const { return kind_ == Kind::kPipes ? write_fd_ : read_fd_; }
  void FinishRead();
  void ShutWrite();
  // Writes what the fd takes now; `written` says how much. False after a
  // write error (the relay failed).
  bool WriteOut(std::string_view bytes, size_t& written);
  void ReadDatagram();
  void WriteDatagrams();

  link::StreamMux& mux_;
  const uint32_t id_;
  const Kind kind_;
  UniqueFd read_fd_;
  UniqueFd write_fd_;  // kPipes only
  bool connecting_;
  std::string inbox_;  // from the stream, not yet written
  size_t inbox_off_ = 0;
  bool read_done_ = false;
  bool peer_eof_ = false;
  bool write_shut_ = false;
  bool end_at_drain_ = false;
  bool dead_ = false;
};

}  // namespace cove::agent
