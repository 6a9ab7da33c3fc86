#include "daemon/fetch/fetch_protocol.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace cove::fetch {

std::string ProgressLine(uint64_t done, uint64_t total, uint64_t per_second) {
  return absl::StrCat("progress ", done, " ", total, " ", per_second, "\n");
}

std::string ImageLine(absl::string_view dir) { return absl::StrCat("image ", dir, "\n"); }

std::string FailLine(const absl::Status& status) {
  std::string message =
      absl::StrReplaceAll(status.message(), {{"\r\n", " "}, {"\n", " "}, {"\r", " "}});
  const std::string head = absl::StrCat("fail ", static_cast<int>(status.code()), " ");
  if (head.size() + message.size() + 1 > kMaxLine) message.resize(kMaxLine - head.size() - 1);
  return absl::StrCat(head, message, "\n");
}

absl::StatusOr<Line> ParseLine(absl::string_view text) {
  const std::pair<absl::string_view, absl::string_view> word =
      absl::StrSplit(text, absl::MaxSplits(' ', 1));
  Line line;
  if (word.first == "progress") {
    const std::vector<absl::string_view> n = absl::StrSplit(word.second, ' ');
    if (n.size() == 3 && absl::SimpleAtoi(n[0], &line.done) &&
        absl::SimpleAtoi(n[1], &line.total) && absl::SimpleAtoi(n[2], &line.per_second)) {
      line.kind = Line::Kind::kProgress;
      return line;
    }
  } else if (word.first == "image" && !word.second.empty()) {
    line.kind = Line::Kind::kImage;
    line.dir = std::string(word.second);
    return line;
  } else if (word.first == "fail") {
    const std::pair<absl::string_view, absl::string_view> rest =
        absl::StrSplit(word.second, absl::MaxSplits(' ', 1));
    int code = 0;
    if (absl::SimpleAtoi(rest.first, &code) && code > 0 && code <= 16) {
      line.kind = Line::Kind::kFail;
      line.status = absl::Status(static_cast<absl::StatusCode>(code), rest.second);
      return line;
    }
  }
  return absl::InternalError(absl::StrCat("cove-fetch said \"", text.substr(0, 200),
                                          "\", which coved does not understand"));
}

}  // namespace cove::fetch
