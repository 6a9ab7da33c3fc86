// The input language of agent_link_fuzz: what a hostile guest does to coved's
// end of the agent link, one operation at a time. Shared by the harness,
// which reads it, and the seed generator, which writes it.
//
// An input is a sequence of operations: an opcode byte (taken % 8) and its
// arguments. Lengths and counts are 2 bytes big endian; an operation cut
// short by the end of the input reads zeros.
//
//   0 RAW n bytes          n raw bytes onto the link, exactly as given
//   1 CONTROL n bytes      a CONTROL frame on stream 0 with that payload
//                          (meant to be a cove.agent.v1.GuestToHost)
//   2 HELLO session ver    a Hello; session (% 3): 0 echoes the session of
//                          the last HostHello seen, 1 is 0 (the agent just
//                          started), 2 is a stale one; ver is the protocol
//   3 FRAME type id n bytes  a frame of type (% 8: 6 and 7 are invalid) on
//                          stream id (0-255) with that payload
//   4 LISTENERS count seed a Listeners message of `count` listeners made
//                          from `seed`, framed even when over the limit
//   5 HOST op a b          what coved does on its own (see HostOp)
//   6 GUEST op             what the guest does besides sending (GuestOp)
//   7 REPEAT e             sends the bytes of the last sending op again,
//                          2^(e % 17) times (within the harness's budget); one
//                          byte, so that 0xff, which mutations love, is cheap
//
// Every operation is followed by running coved's loop until it has read
// everything and gone quiet, and by reading what it sent (unless the guest
// stopped reading).
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "common/link_frame.h"
#include "cove/agent/v1/agent.pb.h"

namespace cove::fuzz::agent_ops {

enum Op : uint8_t {
  kRaw = 0,
  kControl = 1,
  kHello = 2,
  kFrame = 3,
  kListeners = 4,
  kHost = 5,
  kGuest = 6,
  kRepeat = 7,
};
inline constexpr uint8_t kNumOps = 8;

enum HelloSession : uint8_t { kEcho = 0, kUnprompted = 1, kStale = 2 };
inline constexpr uint8_t kNumHelloSessions = 3;

// HOST op a b: `a` picks a stream among those open (or is the id itself when
// none are), `b` is an amount.
enum HostOp : uint8_t {
  kOpenExec = 0,    // OpenStream(exec)
  kWrite = 1,       // WriteStream(b KiB)
  kCloseWrite = 2,  // CloseStreamWrite
  kReset = 3,       // ResetStream
  kShutdown = 4,    // RequestShutdown (b odd) or SendControl(ExecResize)
  kForget = 5,      // ForgetStream
  kConsume = 6,     // ConsumeStream(b KiB): an exec client reads its output
};
inline constexpr uint8_t kNumHostOps = 7;

enum GuestOp : uint8_t {
  kToggleReading = 0,  // stop (or resume) reading what coved sends
  kClose = 1,          // close the guest end of the connection
  kReconnect = 2,      // wait for coved to reconnect (once per input)
};
inline constexpr uint8_t kNumGuestOps = 3;

// The payload of LISTENERS: a GuestToHost with `count` listeners of every
// proto, on addresses good and bad, on ports from 0 to past 65535.
inline std::string ListenersPayload(uint16_t count, uint8_t seed) {
  static const char* const kAddresses[] = {"0.0.0.0",          "::",      "127.0.0.1", "::1",
                                           "192.168.5.15",     "fe80::1", "",          "not an ip",
                                           "::ffff:127.0.0.1", "0000::1"};
  cove::agent::v1::GuestToHost msg;
  auto* set = msg.mutable_listeners();
  set->set_generation(seed);
  for (uint32_t i = 0; i < count; ++i) {
    auto* l = set->add_listeners();
    l->set_proto(static_cast<cove::agent::v1::Proto>((seed + i) % 3));
    l->set_address(kAddresses[(seed / 3 + i) % std::size(kAddresses)]);
    l->set_port((seed * 257u + i * 13u) % 70000u);
  }
  return msg.SerializeAsString();
}

// A frame header with any type and length (EncodeFrame refuses payloads over
// the limit).
inline std::string FrameHeader(uint8_t type, uint32_t stream_id, uint32_t length) {
  std::string h = {static_cast<char>(link::kMagic0), static_cast<char>(link::kMagic1),
                   static_cast<char>(link::kLinkVersion), static_cast<char>(type)};
  for (uint32_t v : {stream_id, length}) {
    for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<char>(v >> shift));
  }
  return h;
}

// Writes inputs in this language (for seeds and tests).
class OpWriter {
 public:
  OpWriter& Raw(std::string_view bytes) { return Op(kRaw).Bytes(bytes); }
  OpWriter& Control(std::string_view payload) { return Op(kControl).Bytes(payload); }
  OpWriter& Hello(HelloSession session, uint8_t version = 1) {
    return Op(kHello).U8(session).U8(version);
  }
  OpWriter& Frame(uint8_t type, uint8_t stream_id, std::string_view payload) {
    return Op(kFrame).U8(type).U8(stream_id).Bytes(payload);
  }
  OpWriter& Listeners(uint16_t count, uint8_t seed) { return Op(kListeners).U16(count).U8(seed); }
  OpWriter& Host(HostOp op, uint8_t a = 0, uint8_t b = 0) { return Op(kHost).U8(op).U8(a).U8(b); }
  OpWriter& Guest(GuestOp op) { return Op(kGuest).U8(op); }
  // Sends the last op's bytes 2^exponent more times.
  OpWriter& Repeat(uint8_t exponent) { return Op(kRepeat).U8(exponent); }

  const std::string& bytes() const { return out_; }

 private:
  OpWriter& Op(uint8_t op) { return U8(op); }
  OpWriter& U8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  OpWriter& U16(uint16_t v) { return U8(static_cast<uint8_t>(v >> 8)).U8(static_cast<uint8_t>(v)); }
  OpWriter& Bytes(std::string_view b) {
    U16(static_cast<uint16_t>(b.size()));
    out_.append(b.substr(0, 0xffff));
    return *this;
  }

  std::string out_;
};

}  // namespace cove::fuzz::agent_ops
