// Fuzzes cove::link::FrameDecoder, which parses bytes from the guest: a
// hostile or broken agent must not crash coved or make it buffer without bound.
// Input layout: tests/fuzz/split_input.h.
//
// Invariants (a violation traps, so libFuzzer keeps the input):
//  - every frame has a payload of at most kMaxFramePayload bytes;
//  - re-encoding a frame and decoding that again gives the same frame, and the
//    re-encoded frames are exactly the bytes the decoder consumed;
//  - once Feed() returned false it keeps returning false, with an error();
//  - buffered() never exceeds kHeaderSize + kMaxFramePayload + the last piece.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/link_frame.h"
#include "tests/fuzz/split_input.h"

namespace {

using cove::link::EncodeFrame;
using cove::link::Frame;
using cove::link::FrameDecoder;
using cove::link::kHeaderSize;
using cove::link::kMaxFramePayload;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

bool SameFrame(const Frame& a, const Frame& b) {
  return a.type == b.type && a.stream_id == b.stream_id && a.payload == b.payload;
}

void CheckRoundTrip(const Frame& frame, const std::string& encoded) {
  FrameDecoder again;
  Check(again.Feed(encoded));
  auto decoded = again.Next();
  Check(decoded.has_value() && SameFrame(*decoded, frame));
  Check(!again.Next().has_value());
  Check(again.buffered() == 0 && again.error().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const cove::fuzz::SplitInput in = cove::fuzz::Split(data, size);

  FrameDecoder decoder;
  bool failed = false;
  size_t accepted = 0;    // bytes handed to the decoder before it failed
  std::string reencoded;  // every frame taken out, encoded again
  for (std::string_view piece : in.pieces) {
    const bool ok = decoder.Feed(piece);
    if (failed) {
      Check(!ok);
      continue;
    }
    accepted += piece.size();
    failed = !ok;
    Check(failed == !decoder.error().empty());
    while (auto frame = decoder.Next()) {
      Check(frame->payload.size() <= kMaxFramePayload);
      const std::string encoded = EncodeFrame(*frame);
      CheckRoundTrip(*frame, encoded);
      reencoded += encoded;
    }
    Check(decoder.buffered() <= kHeaderSize + kMaxFramePayload + piece.size());
  }
  // The decoder neither drops nor invents bytes: what it consumed is what the
  // frames it returned encode to.
  Check(decoder.buffered() <= accepted);
  const size_t consumed = accepted - decoder.buffered();
  Check(reencoded == in.stream.substr(0, consumed));

  if (failed) Check(!decoder.Feed("CV") && !decoder.Next().has_value());
  return 0;
}
