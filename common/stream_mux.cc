#include "common/stream_mux.h"

#include <algorithm>

namespace cove::link {
namespace {

// Control frames waiting to go out; a peer that makes us queue more (say, by
// sending data for unknown streams without reading our resets) is dropped.
constexpr size_t kMaxControlBacklog = 1024 * 1024;

std::string U32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

uint32_t ReadU32(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

StreamMux::StreamMux(Side side, Callbacks callbacks)
    : side_(side), callbacks_(std::move(callbacks)), next_id_(side == Side::kHost ? 1 : 2) {}

bool StreamMux::PeerOwns(uint32_t id) const {
  const bool odd = (id & 1u) != 0;
  return side_ == Side::kHost ? !odd : odd;
}

void StreamMux::Control(FrameType type, uint32_t id, std::string payload) {
  EncodeFrame(Frame{type, id, std::move(payload)}, control_out_);
}

void StreamMux::Notify() {
  if (callbacks_.on_output && HasOutput()) callbacks_.on_output();
}

void StreamMux::Activate(uint32_t id) {
  if (std::find(active_.begin(), active_.end(), id) == active_.end()) active_.push_back(id);
}

void StreamMux::SendControl(std::string_view payload) {
  EncodeFrame(FrameType::kControl, 0, payload, control_out_);
  Notify();
}

uint32_t StreamMux::Open(std::string payload) {
  if (streams_.size() >= kMaxStreams) return 0;
  uint32_t id = next_id_;
  // Ids wrap after four billion streams; skip 0 and ids still in use.
  while (id == 0 || streams_.count(id)) id += 2;
  next_id_ = id + 2;
  streams_[id];
  Control(FrameType::kOpen, id, std::move(payload));
  Notify();
  return id;
}

bool StreamMux::Write(uint32_t id, std::string_view data) {
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second.write_closed) return false;
  Stream& s = it->second;
  if (s.pending() + data.size() > kMaxBuffered) {
    s.blocked = true;
    return false;
  }
  // Drop the framed prefix before it costs more than the bytes kept.
  if (s.send_off > 0 && s.send_off >= s.pending()) {
    s.send_buf.erase(0, s.send_off);
    s.send_off = 0;
  }
  s.send_buf.append(data);
  // Past half full, the writer will soon have to wait: tell it when the
  // buffer drains back (on_writable), whether or not a Write was refused.
  if (s.pending() > kMaxBuffered / 2) s.blocked = true;
  if (s.send_credit > 0) {
    Activate(id);
    Notify();
  }
  return true;
}

size_t StreamMux::WritableBytes(uint32_t id) const {
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second.write_closed) return 0;
  return kMaxBuffered - std::min(kMaxBuffered, it->second.pending());
}

void StreamMux::CloseWrite(uint32_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second.write_closed) return;
  it->second.write_closed = true;
  Activate(id);
  Notify();
}

void StreamMux::Reset(uint32_t id, const std::string& reason) {
  if (streams_.erase(id) == 0) return;
  Control(FrameType::kReset, id, reason.substr(0, 1024));
  Notify();
}

void StreamMux::Consumed(uint32_t id, size_t n) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  Stream& s = it->second;
  s.consumed_unacked += n;
  // Grant credit in batches of half a window: fewer CREDIT frames, and the
  // sender never runs dry while the receiver keeps up.
  if (s.consumed_unacked >= kWindow / 2) {
    const auto grant = static_cast<uint32_t>(std::min<uint64_t>(s.consumed_unacked, kWindow));
    s.consumed_unacked -= grant;
    s.recv_window += grant;
    Control(FrameType::kCredit, id, U32(grant));
    Notify();
  }
}

void StreamMux::MaybeFinish(uint32_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  const Stream& s = it->second;
  if (s.close_sent && s.peer_closed && s.pending() == 0) streams_.erase(it);
}

bool StreamMux::OnFrame(const Frame& frame) {
  const uint32_t id = frame.stream_id;
  if (frame.type == FrameType::kControl || id == 0) return false;
  if (control_out_.size() > kMaxControlBacklog) return false;
  auto it = streams_.find(id);
  switch (frame.type) {
    case FrameType::kOpen: {
      if (!PeerOwns(id) || it != streams_.end()) {
        Control(FrameType::kReset, id, "stream id already in use or not yours");
        break;
      }
      if (streams_.size() >= kMaxStreams) {
        Control(FrameType::kReset, id, "too many streams");
        break;
      }
      streams_[id];
      if (callbacks_.on_open) callbacks_.on_open(id, frame.payload);
      break;
    }
    case FrameType::kData: {
      if (it == streams_.end()) {
        Control(FrameType::kReset, id, "unknown stream");
        break;
      }
      Stream& s = it->second;
      const auto n = static_cast<int64_t>(frame.payload.size());
      if (s.peer_closed || n > s.recv_window) {
        const std::string why = s.peer_closed ? "data after close" : "flow control violated";
        streams_.erase(it);
        Control(FrameType::kReset, id, why);
        if (callbacks_.on_reset) callbacks_.on_reset(id, why);
        break;
      }
      s.recv_window -= n;
      if (callbacks_.on_data && n > 0) callbacks_.on_data(id, frame.payload);
      break;
    }
    case FrameType::kCloseWrite: {
      if (it == streams_.end()) break;
      it->second.peer_closed = true;
      if (callbacks_.on_close_write) callbacks_.on_close_write(id);
      MaybeFinish(id);
      break;
    }
    case FrameType::kReset: {
      if (it == streams_.end()) break;  // never answer a reset
      streams_.erase(it);
      if (callbacks_.on_reset) callbacks_.on_reset(id, frame.payload.substr(0, 1024));
      break;
    }
    case FrameType::kCredit: {
      if (frame.payload.size() != 4) return false;
      if (it == streams_.end()) break;  // credit for a stream already gone
      Stream& s = it->second;
      const uint32_t grant = ReadU32(frame.payload);
      if (s.send_credit + grant > int64_t{kWindow} * 4) return false;  // more than ever owed
      s.send_credit += grant;
      if (s.pending() > 0 || (s.write_closed && !s.close_sent)) Activate(id);
      break;
    }
    default:
      return false;
  }
  Notify();
  return true;
}

bool StreamMux::HasOutput() const {
  if (!control_out_.empty()) return true;
  for (uint32_t id : active_) {
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    const Stream& s = it->second;
    if ((s.pending() > 0 && s.send_credit > 0) ||
        (s.write_closed && !s.close_sent && s.pending() == 0)) {
      return true;
    }
  }
  return false;
}

std::string StreamMux::TakeOutput(size_t max_bytes) {
  std::string out = std::move(control_out_);
  control_out_.clear();
  std::vector<uint32_t> writable;
  // Round-robin, one chunk per stream per turn, until the budget is spent
  // or nothing can move.
  while (out.size() < max_bytes && !active_.empty()) {
    const uint32_t id = active_.front();
    active_.pop_front();
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    Stream& s = it->second;
    if (s.pending() > 0 && s.send_credit > 0) {
      const size_t n =
          std::min<size_t>({s.pending(), static_cast<size_t>(s.send_credit), kMaxChunk});
      EncodeFrame(FrameType::kData, id, std::string_view(s.send_buf).substr(s.send_off, n), out);
      s.send_off += n;
      if (s.send_off == s.send_buf.size()) {
        s.send_buf.clear();
        s.send_off = 0;
      }
      s.send_credit -= static_cast<int64_t>(n);
      if (s.blocked && s.pending() <= kMaxBuffered / 2) {
        s.blocked = false;
        writable.push_back(id);
      }
    }
    if (s.pending() == 0 && s.write_closed && !s.close_sent) {
      EncodeFrame(FrameType::kCloseWrite, id, "", out);
      s.close_sent = true;
    }
    if (s.pending() > 0 && s.send_credit > 0) active_.push_back(id);
    MaybeFinish(id);
  }
  for (uint32_t id : writable) {
    if (callbacks_.on_writable && streams_.count(id)) callbacks_.on_writable(id);
  }
  return out;
}

void StreamMux::ResetAll(const std::string& reason) {
  auto streams = std::move(streams_);
  streams_.clear();
  control_out_.clear();
  active_.clear();
  for (const auto& [id, s] : streams) {
    if (callbacks_.on_reset) callbacks_.on_reset(id, reason);
  }
}

}  // namespace cove::link
