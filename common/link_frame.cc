#include "common/link_frame.h"

#include <cassert>
#include <cstdlib>

namespace cove::link {
namespace {

void PutU32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

uint32_t GetU32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool KnownType(uint8_t t) { return t <= static_cast<uint8_t>(FrameType::kCredit); }

}  // namespace

void EncodeFrame(FrameType type, uint32_t stream_id, std::string_view payload, std::string& out) {
  if (payload.size() > kMaxFramePayload) std::abort();  // callers split data
  out.push_back(static_cast<char>(kMagic0));
  out.push_back(static_cast<char>(kMagic1));
  out.push_back(static_cast<char>(kLinkVersion));
  out.push_back(static_cast<char>(type));
  PutU32(out, stream_id);
  PutU32(out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
}

void EncodeFrame(const Frame& frame, std::string& out) {
  EncodeFrame(frame.type, frame.stream_id, frame.payload, out);
}

std::string EncodeFrame(const Frame& frame) {
  std::string out;
  out.reserve(kHeaderSize + frame.payload.size());
  EncodeFrame(frame, out);
  return out;
}

bool FrameDecoder::Feed(std::string_view bytes) {
  if (!error_.empty()) return false;
  if (offset_ == buffer_.size()) {
    // Nothing held (the usual case): take whole frames straight from the
    // input and keep only the partial one at its end.
    buffer_.clear();
    offset_ = 0;
    size_t used = 0;
    const bool ok = Parse(bytes, used);
    buffer_.assign(bytes.substr(used));  // on failure too: buffered() counts it
    return ok;
  }
  buffer_.append(bytes);
  size_t used = 0;
  const bool ok = Parse(std::string_view(buffer_).substr(offset_), used);
  offset_ += used;
  if (!ok) return false;
  // Compact once the consumed prefix dominates, so the buffer stays bounded by
  // one frame plus one read.
  if (offset_ > 0 && offset_ >= buffer_.size() / 2) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  return true;
}

bool FrameDecoder::Parse(std::string_view data, size_t& used) {
  used = 0;
  while (data.size() - used >= kHeaderSize) {
    const auto* h = reinterpret_cast<const unsigned char*>(data.data() + used);
    if (h[0] != kMagic0 || h[1] != kMagic1) {
      error_ = "agent link: bad frame magic (stream out of sync)";
      return false;
    }
    if (h[2] != kLinkVersion) {
      error_ = "agent link: unsupported frame version " + std::to_string(h[2]);
      return false;
    }
    if (!KnownType(h[3])) {
      error_ = "agent link: unknown frame type " + std::to_string(h[3]);
      return false;
    }
    const uint32_t length = GetU32(h + 8);
    if (length > kMaxFramePayload) {
      error_ = "agent link: frame of " + std::to_string(length) + " bytes exceeds the limit of " +
               std::to_string(kMaxFramePayload);
      return false;
    }
    if (data.size() - used < kHeaderSize + length) break;
    Frame frame;
    frame.type = static_cast<FrameType>(h[3]);
    frame.stream_id = GetU32(h + 4);
    frame.payload.assign(data.data() + used + kHeaderSize, length);
    used += kHeaderSize + length;
    ready_.push_back(std::move(frame));
  }
  return true;
}

std::optional<Frame> FrameDecoder::Next() {
  if (ready_.empty()) return std::nullopt;
  Frame f = std::move(ready_.front());
  ready_.pop_front();
  return f;
}

}  // namespace cove::link
