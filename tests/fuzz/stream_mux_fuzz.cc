// Fuzzes cove::link::StreamMux, the stream layer both coved and cove-agent
// run over the agent link: what a hostile or broken peer sends, interleaved
// with what the local application does.
//
// Input: a sequence of operations, each an opcode byte and its arguments:
//   0 type id len payload...  a frame from the peer (id: 1 byte, len: 1 byte)
//   1 id len                  Write(id, len bytes)
//   2 id n                    Consumed(id, n * 1024)
//   3 n                       TakeOutput(n * 1024), checked
//   4 id / 5 id               CloseWrite / Reset
//   6                         Open
// Invariants: at most kMaxStreams streams; every output decodes into valid
// frames with DATA payloads of at most kMaxChunk; a stream's DATA never
// exceeds the credit the peer granted (kWindow plus CREDITs); once OnFrame
// refuses, the owner would drop the link, so the run ends.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "common/link_frame.h"
#include "common/stream_mux.h"

namespace {

using cove::link::Frame;
using cove::link::FrameDecoder;
using cove::link::FrameType;
using cove::link::StreamMux;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  StreamMux mux(StreamMux::Side::kGuest, StreamMux::Callbacks{
                                             .on_open = [](uint32_t, std::string) {},
                                             .on_data = [](uint32_t, std::string_view) {},
                                             .on_close_write = [](uint32_t) {},
                                             .on_reset = [](uint32_t, const std::string&) {},
                                             .on_writable = [](uint32_t) {},
                                             .on_output = [] {},
                                         });
  std::map<uint32_t, int64_t> sent;     // DATA bytes we sent per stream
  std::map<uint32_t, int64_t> granted;  // credit the peer granted per stream
  size_t i = 0;
  auto next = [&]() -> uint8_t { return i < size ? data[i++] : 0; };
  while (i < size) {
    const uint8_t op = next() % 7;
    if (op == 0) {
      Frame f;
      f.type = static_cast<FrameType>(next() % 6);
      f.stream_id = next();
      const size_t len = next();
      const size_t n = std::min(len, size - i);
      f.payload.assign(reinterpret_cast<const char*>(data + i), n);
      i += n;
      if (f.type == FrameType::kCredit && f.payload.size() == 4) {
        const auto* p = reinterpret_cast<const unsigned char*>(f.payload.data());
        granted[f.stream_id] +=
            (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | p[3];
      }
      if (f.type == FrameType::kOpen) {
        sent.erase(f.stream_id);
        granted.erase(f.stream_id);
      }
      if (!mux.OnFrame(f)) return 0;
    } else if (op == 1) {
      const uint32_t id = next();
      mux.Write(id, std::string(next() * 97u, 'x'));
    } else if (op == 2) {
      const uint32_t id = next();
      mux.Consumed(id, size_t{next()} * 1024);
    } else if (op == 3) {
      const std::string out = mux.TakeOutput(size_t{next()} * 1024 + 1);
      FrameDecoder d;
      Check(d.Feed(out));
      Check(d.buffered() == 0);
      while (auto f = d.Next()) {
        if (f->type == FrameType::kData) {
          Check(f->payload.size() <= StreamMux::kMaxChunk);
          sent[f->stream_id] += static_cast<int64_t>(f->payload.size());
          Check(sent[f->stream_id] <= int64_t{StreamMux::kWindow} + granted[f->stream_id]);
        }
      }
    } else if (op == 4) {
      mux.CloseWrite(next());
    } else if (op == 5) {
      mux.Reset(next(), "fuzz");
    } else {
      const uint32_t id = mux.Open("fuzz");
      if (id != 0) {
        sent.erase(id);
        granted.erase(id);
      }
    }
    Check(mux.stream_count() <= StreamMux::kMaxStreams);
  }
  return 0;
}
