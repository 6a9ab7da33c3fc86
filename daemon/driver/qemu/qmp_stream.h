// Splits the QMP byte stream into JSON messages. QEMU sends one object per
// line, but a read can hold several messages (batched events) or part of one;
// this scanner does not rely on line breaks: it tracks brace depth outside of
// strings, so every complete top-level object is returned, whatever the split.
// (Multipass's QMP reader parsed only the first object of a read and lost
// batched events: ANCHORS.md.)
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cove::daemon::qemu {

class QmpStream {
 public:
  // Bound on one message; QEMU's answers are small. Past it, the stream is
  // broken and the caller must drop the connection.
  static constexpr size_t kMaxMessage = 1 << 20;
  // Bound on nesting: copying or printing a JSON value recurses once per
  // level, so a deeply nested message could overflow coved's stack.
  static constexpr int kMaxDepth = 64;

  // Appends bytes and returns every message completed by them, in order.
  // Sets failed() on an unparseable or oversized message.
  std::vector<nlohmann::json> Feed(std::string_view bytes);

  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  std::string current_;  // bytes of the message being read
  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
  std::string error_;
};

}  // namespace cove::daemon::qemu
