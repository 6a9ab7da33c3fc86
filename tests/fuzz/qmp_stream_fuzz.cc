// Fuzzes cove::daemon::qemu::QmpStream, which splits QEMU's QMP socket into
// messages. Input layout: tests/fuzz/split_input.h.
//
// Invariants (a violation traps, so libFuzzer keeps the input):
//  - every message returned is a JSON object;
//  - the split does not matter: feeding the stream whole and feeding it in the
//    pieces gives the same messages (compared as dumps) and the same failed().
//    The scanner keeps its state byte by byte, so this holds even up to a
//    failure, which is stronger than comparing only runs that both succeed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/driver/qemu/qmp_stream.h"
#include "tests/fuzz/split_input.h"

namespace {

using cove::daemon::qemu::QmpStream;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Run {
  std::vector<std::string> dumps;
  bool failed = false;
};

void Take(const std::vector<nlohmann::json>& messages, Run& run) {
  for (const nlohmann::json& msg : messages) {
    Check(msg.is_object());
    run.dumps.push_back(msg.dump());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const cove::fuzz::SplitInput in = cove::fuzz::Split(data, size);

  Run whole;
  {
    QmpStream stream;
    Take(stream.Feed(in.stream), whole);
    whole.failed = stream.failed();
    Check(whole.failed == !stream.error().empty());
  }

  Run split;
  {
    QmpStream stream;
    for (std::string_view piece : in.pieces) {
      const bool was_failed = stream.failed();
      const auto messages = stream.Feed(piece);
      Check(!was_failed || messages.empty());  // a failed stream stays silent
      Take(messages, split);
    }
    split.failed = stream.failed();
  }

  Check(whole.failed == split.failed);
  Check(whole.dumps == split.dumps);
  return 0;
}
