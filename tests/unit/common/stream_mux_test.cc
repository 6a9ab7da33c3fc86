#include "common/stream_mux.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>

using cove::link::Frame;
using cove::link::FrameDecoder;
using cove::link::FrameType;
using cove::link::StreamMux;

namespace {

// One end of a pair of muxes, recording what its callbacks saw.
struct End {
  explicit End(StreamMux::Side side)
      : mux(side, StreamMux::Callbacks{
                      .on_open = [this](uint32_t id, std::string p) { opened[id] = p; },
                      .on_data = [this](uint32_t id, std::string_view d) { received[id] += d; },
                      .on_close_write = [this](uint32_t id) { closed.push_back(id); },
                      .on_reset = [this](uint32_t id, const std::string& r) { resets[id] = r; },
                      .on_writable = [this](uint32_t id) { writable.push_back(id); },
                      .on_output = [] {},
                  }) {}
  StreamMux mux;
  std::map<uint32_t, std::string> opened, received, resets;
  std::vector<uint32_t> closed, writable;
  FrameDecoder decoder;
};

// Moves everything `from` has to send into `to`. Returns bytes moved.
size_t Pump(End& from, End& to, size_t budget = 1 << 30) {
  std::string bytes = from.mux.TakeOutput(budget);
  REQUIRE(to.decoder.Feed(bytes));
  while (auto f = to.decoder.Next()) REQUIRE(to.mux.OnFrame(*f));
  return bytes.size();
}

void PumpAll(End& a, End& b) {
  while (Pump(a, b) + Pump(b, a) > 0) {
  }
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

}  // namespace

TEST_CASE("a stream opens, carries data both ways, and closes on both sides", "[mux]") {
  End host(StreamMux::Side::kHost), guest(StreamMux::Side::kGuest);
  const uint32_t id = host.mux.Open("exec sh");
  CHECK(id % 2 == 1);
  REQUIRE(host.mux.Write(id, "hello"));
  PumpAll(host, guest);
  CHECK(guest.opened[id] == "exec sh");
  CHECK(guest.received[id] == "hello");
  REQUIRE(guest.mux.Write(id, "world"));
  guest.mux.CloseWrite(id);
  host.mux.CloseWrite(id);
  PumpAll(host, guest);
  CHECK(host.received[id] == "world");
  CHECK(host.closed == std::vector<uint32_t>{id});
  CHECK(guest.closed == std::vector<uint32_t>{id});
  CHECK(host.mux.stream_count() == 0);
  CHECK(guest.mux.stream_count() == 0);
  // The guest opens even ids: no collision with the host's.
  CHECK(guest.mux.Open("forward") % 2 == 0);
}

TEST_CASE("a receiver that does not consume gets at most one window", "[mux]") {
  End host(StreamMux::Side::kHost), guest(StreamMux::Side::kGuest);
  const uint32_t id = host.mux.Open("");
  const std::string data = Pattern(StreamMux::kMaxBuffered);
  REQUIRE(host.mux.Write(id, data));
  PumpAll(host, guest);
  CHECK(guest.received[id].size() == StreamMux::kWindow);
  // Consuming grants credit; everything arrives, in order.
  while (guest.received[id].size() < data.size()) {
    const size_t before = guest.received[id].size();
    guest.mux.Consumed(id, StreamMux::kWindow / 2);
    PumpAll(host, guest);
    REQUIRE(guest.received[id].size() > before);
  }
  CHECK(guest.received[id] == data);
}

TEST_CASE("a stalled stream does not hold up another one", "[mux]") {
  End host(StreamMux::Side::kHost), guest(StreamMux::Side::kGuest);
  const uint32_t stalled = host.mux.Open("nobody reads");
  const uint32_t busy = host.mux.Open("bulk");
  REQUIRE(host.mux.Write(stalled, Pattern(StreamMux::kMaxBuffered)));
  const std::string bulk = Pattern(4 * StreamMux::kMaxBuffered);
  size_t sent = 0, consumed = 0, turns = 0;
  while (guest.received[busy].size() < bulk.size()) {
    REQUIRE(++turns < 10000);
    if (sent < bulk.size()) {
      const size_t n = std::min<size_t>(64 * 1024, bulk.size() - sent);
      if (host.mux.Write(busy, std::string_view(bulk).substr(sent, n))) sent += n;
    }
    // A small link budget per turn, as a real transport would have.
    Pump(host, guest, 128 * 1024);
    Pump(guest, host);
    // The busy stream's reader keeps up; the stalled one never reads.
    guest.mux.Consumed(busy, guest.received[busy].size() - consumed);
    consumed = guest.received[busy].size();
  }
  CHECK(guest.received[busy] == bulk);
  CHECK(guest.received[stalled].size() == StreamMux::kWindow);
}

TEST_CASE("writes beyond the buffer bound are refused until it drains", "[mux]") {
  End host(StreamMux::Side::kHost), guest(StreamMux::Side::kGuest);
  const uint32_t id = host.mux.Open("");
  REQUIRE(host.mux.Write(id, Pattern(StreamMux::kMaxBuffered)));
  CHECK_FALSE(host.mux.Write(id, "x"));
  PumpAll(host, guest);  // one window goes out
  // Credit comes back a window at a time; on_writable fires once, when the
  // buffer is down to half, and not before.
  for (int i = 0; i < 8 && host.writable.empty(); i++) {
    CHECK(host.mux.WritableBytes(id) < StreamMux::kMaxBuffered / 2);
    guest.mux.Consumed(id, StreamMux::kWindow);
    PumpAll(host, guest);
  }
  CHECK(host.writable == std::vector<uint32_t>{id});
  CHECK(host.mux.WritableBytes(id) >= StreamMux::kMaxBuffered / 2);
  CHECK(host.mux.Write(id, "x"));
}

TEST_CASE("data beyond the granted credit resets only that stream", "[mux]") {
  End guest(StreamMux::Side::kGuest);
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kOpen, 1, "a"}));
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kOpen, 3, "b"}));
  const std::string chunk(StreamMux::kMaxChunk, 'x');
  for (uint32_t sent = 0; sent < StreamMux::kWindow; sent += chunk.size()) {
    REQUIRE(guest.mux.OnFrame(Frame{FrameType::kData, 1, chunk}));
  }
  CHECK(guest.resets.empty());
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kData, 1, "over"}));
  CHECK(guest.resets[1] == "flow control violated");
  CHECK_FALSE(guest.mux.IsOpen(1));
  CHECK(guest.mux.IsOpen(3));
}

TEST_CASE("frames for unknown or foreign stream ids are answered with RESET", "[mux]") {
  End guest(StreamMux::Side::kGuest);
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kData, 7, "stale"}));
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kOpen, 2, "guest ids are even: not the host's"}));
  FrameDecoder d;
  REQUIRE(d.Feed(guest.mux.TakeOutput(1 << 20)));
  auto a = d.Next(), b = d.Next();
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->type == FrameType::kReset);
  CHECK(a->stream_id == 7);
  CHECK(b->type == FrameType::kReset);
  CHECK(b->stream_id == 2);
  CHECK(guest.mux.stream_count() == 0);
  // A reset for an unknown stream is never answered (no ping-pong).
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kReset, 9, "x"}));
  CHECK_FALSE(guest.mux.HasOutput());
}

TEST_CASE("link-level violations are reported to the owner", "[mux]") {
  End guest(StreamMux::Side::kGuest);
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kOpen, 1, ""}));
  CHECK_FALSE(guest.mux.OnFrame(Frame{FrameType::kCredit, 1, "abc"}));  // not 4 bytes
  CHECK_FALSE(guest.mux.OnFrame(Frame{FrameType::kControl, 1, ""}));
  CHECK_FALSE(guest.mux.OnFrame(Frame{FrameType::kData, 0, "x"}));
  CHECK_FALSE(guest.mux.OnFrame(Frame{FrameType::kCredit, 1, std::string("\xff\xff\xff\xff", 4)}));
}

TEST_CASE("losing the link resets every stream", "[mux]") {
  End host(StreamMux::Side::kHost);
  const uint32_t a = host.mux.Open(""), b = host.mux.Open("");
  host.mux.ResetAll("agent link lost");
  CHECK(host.resets[a] == "agent link lost");
  CHECK(host.resets[b] == "agent link lost");
  CHECK(host.mux.stream_count() == 0);
  CHECK_FALSE(host.mux.HasOutput());
}

TEST_CASE("the number of streams is bounded", "[mux]") {
  End host(StreamMux::Side::kHost);
  for (size_t i = 0; i < StreamMux::kMaxStreams; ++i) REQUIRE(host.mux.Open("") != 0);
  CHECK(host.mux.Open("") == 0);
  End guest(StreamMux::Side::kGuest);
  for (uint32_t i = 0; i < StreamMux::kMaxStreams; ++i) {
    REQUIRE(guest.mux.OnFrame(Frame{FrameType::kOpen, 2 * i + 1, ""}));
  }
  REQUIRE(guest.mux.OnFrame(Frame{FrameType::kOpen, 999999, ""}));
  CHECK_FALSE(guest.mux.IsOpen(999999));
}

TEST_CASE("a writer that filled half its buffer hears when it drains, without a refused write",
          "[mux]") {
  End host(StreamMux::Side::kHost), guest(StreamMux::Side::kGuest);
  const uint32_t id = host.mux.Open("fwd");
  PumpAll(host, guest);
  // A careful writer checks WritableBytes first and never has a Write
  // refused; it must still learn when there is room again.
  const std::string chunk = Pattern(64 * 1024);
  while (host.mux.WritableBytes(id) >= chunk.size()) REQUIRE(host.mux.Write(id, chunk));
  CHECK(host.mux.WritableBytes(id) < chunk.size());
  CHECK(host.writable.empty());
  // The guest consumes everything: the buffer drains through the window.
  for (int i = 0; i < 64 && host.mux.WritableBytes(id) < StreamMux::kMaxBuffered; ++i) {
    Pump(host, guest);
    guest.mux.Consumed(id, guest.received[id].size());
    guest.received[id].clear();
    Pump(guest, host);
  }
  CHECK(host.mux.WritableBytes(id) == StreamMux::kMaxBuffered);
  CHECK(host.writable == std::vector<uint32_t>{id});
}
