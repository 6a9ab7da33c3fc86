// Many byte streams over one agent link, each with its own credit-based
// flow control, so a slow reader of one stream (a forwarded socket nobody
// reads, an exec whose terminal is paused) never stalls the others. Wire
// format: docs/agent-link.md, frames in common/link_frame.h.
//
// Both ends use this class: coved opens odd stream ids, cove-agent even ones,
// so both may open streams at once without colliding.
//
// Flow control: a sender may have at most kWindow unacknowledged bytes in
// flight per stream. The receiver grants more with CREDIT frames as the
// application reports bytes consumed (Consumed()). Data beyond the granted
// credit resets that stream only. Every buffer and count has a bound.
//
// Threading and I/O: none. The owner feeds frames in with OnFrame(), pulls
// encoded output with TakeOutput() when its transport can write, and gets
// callbacks synchronously. It uses only the standard library because
// cove-agent links statically.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/link_frame.h"

namespace cove::link {

class StreamMux {
 public:
  enum class Side { kHost, kGuest };

  // Bytes a sender may have in flight per stream before it needs credit.
  static constexpr uint32_t kWindow = 1024 * 1024;
  // Bytes a stream may hold queued for sending; Write() refuses beyond.
  static constexpr size_t kMaxBuffered = 2 * 1024 * 1024;
  static constexpr size_t kMaxStreams = 4096;
  // Largest DATA frame payload; smaller than the frame limit so control
  // frames are never stuck behind a long run of data.
  static constexpr size_t kMaxChunk = 128 * 1024;

  struct Callbacks {
    // The peer opened stream `id`; `payload` says what for (opaque here).
    std::function<void(uint32_t id, std::string payload)> on_open;
    // Bytes arrived. Report them with Consumed() once processed.
    std::function<void(uint32_t id, std::string_view data)> on_data;
    // The peer will send no more on `id` (it may still read).
    std::function<void(uint32_t id)> on_close_write;
    // The stream is gone, reset by the peer or here (reason says which).
    std::function<void(uint32_t id, const std::string& reason)> on_reset;
    // The send buffer drained to half after it was more than half full (or
    // a Write() was refused): a writer waiting for room may go on.
    std::function<void(uint32_t id)> on_writable;
    // TakeOutput() has bytes now.
    std::function<void()> on_output;
  };

  StreamMux(Side side, Callbacks callbacks);

  // Queues a CONTROL frame on stream 0, in order with the OPEN, RESET and
  // CLOSE_WRITE frames queued before it.
  void SendControl(std::string_view payload);

  // Opens a stream; 0 when kMaxStreams are open.
  uint32_t Open(std::string payload);
  // Queues data. False when the stream is unknown, closed for writing, or
  // its buffer would pass kMaxBuffered (nothing is taken; wait for
  // on_writable).
  bool Write(uint32_t id, std::string_view data);
  // Half-close: sends CLOSE_WRITE once the queued data is out.
  void CloseWrite(uint32_t id);
  // Aborts the stream both ways; no callback for a local reset.
  void Reset(uint32_t id, const std::string& reason);
  // The application processed `n` received bytes: the peer may send more.
  void Consumed(uint32_t id, size_t n);

  // A frame from the link (not the control stream). False when the frame
  // breaks the protocol for the whole link (malformed CREDIT, a CONTROL frame
  // on a stream): the owner must drop the link.
  bool OnFrame(const Frame& frame);

  // Encoded frames, control frames first, then data round-robin across
  // streams; about `max_bytes` at most (always at least one frame if any).
  std::string TakeOutput(size_t max_bytes);
  bool HasOutput() const;

  // The link is gone: every stream is reset with `reason` (on_reset for
  // each) and all output is dropped.
  void ResetAll(const std::string& reason);

  // Bytes Write() would take on `id` now (0 for an unknown or closed stream).
  size_t WritableBytes(uint32_t id) const;

  size_t stream_count() const { return streams_.size(); }
  bool IsOpen(uint32_t id) const { return streams_.count(id) != 0; }

 private:
  struct Stream {
    std::string send_buf;  // queued; bytes before send_off are framed
    size_t send_off = 0;
    int64_t send_credit = kWindow;  // bytes we may still send
    int64_t recv_window = kWindow;  // bytes the peer may still send
    uint64_t consumed_unacked = 0;  // consumed but not yet granted back
    bool write_closed = false;      // CloseWrite() called
    bool close_sent = false;        // CLOSE_WRITE framed
    bool peer_closed = false;       // CLOSE_WRITE received
    bool blocked = false;           // a Write() was refused

    size_t pending() const { return send_buf.size() - send_off; }
  };

  void Control(FrameType type, uint32_t id, std::string payload);
  void MaybeFinish(uint32_t id);
  void Activate(uint32_t id);
  void Notify();
  bool PeerOwns(uint32_t id) const;

  const Side side_;
  Callbacks callbacks_;
  uint32_t next_id_;
  std::map<uint32_t, Stream> streams_;
  std::string control_out_;      // encoded control frames, sent first
  std::deque<uint32_t> active_;  // streams that may have data to frame
};

}  // namespace cove::link
