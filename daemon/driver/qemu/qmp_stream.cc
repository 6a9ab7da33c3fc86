#include "daemon/driver/qemu/qmp_stream.h"

namespace cove::daemon::qemu {

std::vector<nlohmann::json> QmpStream::Feed(std::string_view bytes) {
  std::vector<nlohmann::json> out;
  if (failed()) return out;
  for (char c : bytes) {
    if (depth_ == 0) {
      // Between messages: skip whitespace; anything else but '{' is garbage.
      if (c == '{') {
        depth_ = 1;
        current_.assign(1, c);
      } else if (c != ' ' && c != '\r' && c != '\n' && c != '\t') {
        error_ = std::string("unexpected byte between QMP messages: '") + c + "'";
        return out;
      }
      continue;
    }
    current_.push_back(c);
    if (current_.size() > kMaxMessage) {
      error_ = "QMP message larger than 1 MiB";
      return out;
    }
    if (in_string_) {
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      if (++depth_ > kMaxDepth) {
        error_ = "QMP message nested deeper than 64 levels";
        return out;
      }
    } else if (c == '}' || c == ']') {
      if (--depth_ == 0) {
        nlohmann::json msg = nlohmann::json::parse(current_, nullptr, /*allow_exceptions=*/false);
        if (msg.is_discarded() || !msg.is_object()) {
          error_ = "unparseable QMP message: " + current_.substr(0, 200);
          return out;
        }
        out.push_back(std::move(msg));
        current_.clear();
      }
    }
  }
  return out;
}

}  // namespace cove::daemon::qemu
