#include "common/link_frame.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace cove::link {
namespace {

Frame MakeFrame(FrameType type, uint32_t stream_id, std::string payload) {
  Frame frame;
  frame.type = type;
  frame.stream_id = stream_id;
  frame.payload = std::move(payload);
  return frame;
}

void CheckSame(const Frame& got, const Frame& want) {
  CHECK(got.type == want.type);
  CHECK(got.stream_id == want.stream_id);
  CHECK(got.payload == want.payload);
}

std::vector<Frame> Drain(FrameDecoder& decoder) {
  std::vector<Frame> frames;
  while (auto frame = decoder.Next()) frames.push_back(std::move(*frame));
  return frames;
}

// Three frames of different shapes, including binary and empty payloads.
std::vector<Frame> SampleFrames() {
  return {
      MakeFrame(FrameType::kControl, 0, "hello"),
      MakeFrame(FrameType::kCloseWrite, 5, ""),
      MakeFrame(FrameType::kData, 0xfffffffe, std::string("\0\x01\xff\x43\x56", 5)),
  };
}

std::string EncodeAll(const std::vector<Frame>& frames) {
  std::string out;
  for (const auto& frame : frames) EncodeFrame(frame, out);
  return out;
}

// A header with the given fields, for malformed input.
std::string Header(uint8_t m0, uint8_t m1, uint8_t version, uint8_t type, uint32_t length) {
  std::string h = {static_cast<char>(m0),
                   static_cast<char>(m1),
                   static_cast<char>(version),
                   static_cast<char>(type),
                   0,
                   0,
                   0,
                   1};
  for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<char>(length >> shift));
  return h;
}

}  // namespace

TEST_CASE("a frame survives encode and decode", "[link]") {
  Frame frame = MakeFrame(FrameType::kData, 7, "payload bytes");
  std::string wire = EncodeFrame(frame);
  CHECK(wire.size() == kHeaderSize + frame.payload.size());

  FrameDecoder decoder;
  REQUIRE(decoder.Feed(wire));
  auto frames = Drain(decoder);
  REQUIRE(frames.size() == 1);
  CheckSame(frames[0], frame);
  CHECK(decoder.buffered() == 0);
  CHECK(decoder.error().empty());
}

TEST_CASE("every frame type round-trips", "[link]") {
  for (uint8_t t = 0; t <= static_cast<uint8_t>(FrameType::kCredit); ++t) {
    Frame frame = MakeFrame(static_cast<FrameType>(t), t, std::string(t, 'x'));
    FrameDecoder decoder;
    REQUIRE(decoder.Feed(EncodeFrame(frame)));
    auto frames = Drain(decoder);
    REQUIRE(frames.size() == 1);
    CheckSame(frames[0], frame);
  }
}

TEST_CASE("the header is big endian with the stream id at offset 4", "[link]") {
  std::string wire = EncodeFrame(MakeFrame(FrameType::kCredit, 0x01020304, "abc"));
  const std::string want_header = {0x43, 0x56, 0x01, 0x05, 0x01, 0x02,
                                   0x03, 0x04, 0x00, 0x00, 0x00, 0x03};
  CHECK(wire.substr(0, kHeaderSize) == want_header);
  CHECK(wire.substr(kHeaderSize) == "abc");
}

TEST_CASE("a multi-frame buffer decodes at every split point", "[link]") {
  const std::vector<Frame> want = SampleFrames();
  const std::string wire = EncodeAll(want);
  for (size_t split = 0; split <= wire.size(); ++split) {
    INFO("split at " << split);
    FrameDecoder decoder;
    std::vector<Frame> got;
    REQUIRE(decoder.Feed(std::string_view(wire).substr(0, split)));
    for (auto& f : Drain(decoder)) got.push_back(std::move(f));
    REQUIRE(decoder.Feed(std::string_view(wire).substr(split)));
    for (auto& f : Drain(decoder)) got.push_back(std::move(f));
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) CheckSame(got[i], want[i]);
    CHECK(decoder.buffered() == 0);
  }
}

TEST_CASE("frames fed one byte at a time decode", "[link]") {
  const std::vector<Frame> want = SampleFrames();
  const std::string wire = EncodeAll(want);
  FrameDecoder decoder;
  std::vector<Frame> got;
  for (size_t i = 0; i < wire.size(); ++i) {
    REQUIRE(decoder.Feed(std::string_view(wire).substr(i, 1)));
    for (auto& f : Drain(decoder)) got.push_back(std::move(f));
    // Only the current partial frame is held.
    CHECK(decoder.buffered() <= kHeaderSize + 5);
  }
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) CheckSame(got[i], want[i]);
}

TEST_CASE("several frames in one Feed all come out in order", "[link]") {
  std::vector<Frame> want;
  for (uint32_t i = 0; i < 50; ++i) {
    want.push_back(
        MakeFrame(FrameType::kData, i, std::string(i * 3, static_cast<char>('a' + i % 26))));
  }
  FrameDecoder decoder;
  REQUIRE(decoder.Feed(EncodeAll(want)));
  auto got = Drain(decoder);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) CheckSame(got[i], want[i]);
}

TEST_CASE("a zero-length payload is a whole frame", "[link]") {
  FrameDecoder decoder;
  std::string wire = EncodeFrame(MakeFrame(FrameType::kReset, 3, ""));
  CHECK(wire.size() == kHeaderSize);
  REQUIRE(decoder.Feed(wire));
  auto frames = Drain(decoder);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].type == FrameType::kReset);
  CHECK(frames[0].stream_id == 3);
  CHECK(frames[0].payload.empty());
}

TEST_CASE("a partial frame waits for the rest", "[link]") {
  std::string wire = EncodeFrame(MakeFrame(FrameType::kData, 1, "0123456789"));
  FrameDecoder decoder;
  REQUIRE(decoder.Feed(std::string_view(wire).substr(0, kHeaderSize + 4)));
  CHECK_FALSE(decoder.Next());
  CHECK(decoder.buffered() == kHeaderSize + 4);
  REQUIRE(decoder.Feed(std::string_view(wire).substr(kHeaderSize + 4)));
  auto frames = Drain(decoder);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].payload == "0123456789");
}

TEST_CASE("bad magic is rejected", "[link]") {
  FrameDecoder decoder;
  CHECK_FALSE(decoder.Feed(Header('C', 'X', kLinkVersion, 0, 0)));
  CHECK(decoder.error().find("magic") != std::string::npos);
  CHECK_FALSE(decoder.Next());
}

TEST_CASE("an unsupported version is rejected", "[link]") {
  FrameDecoder decoder;
  CHECK_FALSE(decoder.Feed(Header(kMagic0, kMagic1, 2, 0, 0)));
  CHECK(decoder.error().find("version 2") != std::string::npos);
  CHECK_FALSE(decoder.Next());
}

TEST_CASE("an unknown frame type is rejected", "[link]") {
  FrameDecoder decoder;
  CHECK_FALSE(decoder.Feed(Header(kMagic0, kMagic1, kLinkVersion, 6, 0)));
  CHECK(decoder.error().find("type 6") != std::string::npos);
  CHECK_FALSE(decoder.Next());
}

TEST_CASE("an oversize length is rejected from the header alone", "[link]") {
  for (uint32_t length : {kMaxFramePayload + 1, uint32_t{0xffffffff}}) {
    INFO("length " << length);
    FrameDecoder decoder;
    // Only the header is fed: the decoder must refuse before any payload
    // arrives, rather than wait for (and buffer) gigabytes.
    CHECK_FALSE(decoder.Feed(Header(kMagic0, kMagic1, kLinkVersion, 2, length)));
    CHECK(decoder.error().find("exceeds the limit") != std::string::npos);
    CHECK(decoder.buffered() <= kHeaderSize);
  }
}

TEST_CASE("a payload of exactly the limit is accepted", "[link]") {
  Frame frame = MakeFrame(FrameType::kData, 1, std::string(kMaxFramePayload, 'z'));
  FrameDecoder decoder;
  REQUIRE(decoder.Feed(EncodeFrame(frame)));
  auto frames = Drain(decoder);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].payload.size() == kMaxFramePayload);
}

TEST_CASE("a decoder error is sticky", "[link]") {
  FrameDecoder decoder;
  REQUIRE_FALSE(decoder.Feed(Header('x', 'y', kLinkVersion, 0, 0)));
  const std::string error = decoder.error();
  REQUIRE_FALSE(error.empty());
  // Valid bytes afterwards do not revive it: the stream is out of sync.
  CHECK_FALSE(decoder.Feed(EncodeFrame(MakeFrame(FrameType::kControl, 0, "ok"))));
  CHECK(decoder.error() == error);
  CHECK_FALSE(decoder.Next());
}

}  // namespace cove::link
