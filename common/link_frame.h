// Framing of the agent link: the byte channel between coved and cove-agent
// (a virtio-serial port today, vsock later). Wire format: docs/agent-link.md.
//
// Every frame is a fixed 12-byte header followed by `length` payload bytes:
//
//   offset  size  field
//   0       2     magic 0x43 0x56 ("CV")
//   2       1     version (kLinkVersion)
//   3       1     type (FrameType)
//   4       4     stream id, big endian (0 = control stream)
//   8       4     payload length, big endian (<= kMaxFramePayload)
//
// The header carries a stream id from the start so that byte streams (exec,
// forwarded sockets) can share the link later with per-stream credit based
// flow control (OPEN / DATA / CLOSE_WRITE / RESET / CREDIT).
//
// FrameDecoder is a plain value type with no I/O and no threads: feed it bytes
// as they arrive, in any split, and take whole frames out. This file uses only
// the standard library because cove-agent links statically.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace cove::link {

inline constexpr uint8_t kMagic0 = 0x43;  // 'C'
inline constexpr uint8_t kMagic1 = 0x56;  // 'V'
inline constexpr uint8_t kLinkVersion = 1;
inline constexpr size_t kHeaderSize = 12;
// Bounds what a broken or hostile peer can make the other side allocate.
inline constexpr uint32_t kMaxFramePayload = 256 * 1024;

enum class FrameType : uint8_t {
  kControl = 0,     // protobuf: cove.agent.v1.HostToGuest / GuestToHost
  kOpen = 1,        // open a byte stream (payload: stream kind + target)
  kData = 2,        // bytes of a stream
  kCloseWrite = 3,  // sender will send no more data on the stream
  kReset = 4,       // abort the stream in both directions
  kCredit = 5,      // payload: u32 big endian bytes the receiver may send
};

struct Frame {
  FrameType type = FrameType::kControl;
  uint32_t stream_id = 0;
  std::string payload;
};

// Appends the encoded frame to `out`. The payload must fit kMaxFramePayload
// (asserted: callers split data themselves).
void EncodeFrame(const Frame& frame, std::string& out);
void EncodeFrame(FrameType type, uint32_t stream_id, std::string_view payload, std::string& out);
std::string EncodeFrame(const Frame& frame);

class FrameDecoder {
 public:
  // Appends bytes. Returns false (and stays failed, see error()) when the
  // stream is not a valid frame sequence: bad magic or version, unknown type,
  // or a length over kMaxFramePayload. The caller must then drop the link.
  // Whole frames are parsed eagerly, so the caller should drain Next() after
  // each Feed(); at most one partial frame is ever buffered.
  bool Feed(std::string_view bytes);

  // Why the stream was rejected; empty while it is fine.
  const std::string& error() const { return error_; }

  // Next whole frame, if any.
  std::optional<Frame> Next();

  // Bytes held that do not yet form a whole frame.
  size_t buffered() const { return buffer_.size() - offset_; }

 private:
  // Moves the whole frames at the start of `data` to ready_; `used` gets
  // their length. False (error_ set) on a malformed header.
  bool Parse(std::string_view data, size_t& used);

  std::string buffer_;
  size_t offset_ = 0;
  std::deque<Frame> ready_;
  std::string error_;
};

}  // namespace cove::link
