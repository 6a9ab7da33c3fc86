#include "daemon/driver/qemu/qmp_stream.h"

#include <catch2/catch.hpp>

using cove::daemon::qemu::QmpStream;

namespace {
const std::string kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}})"
    "\r\n";
const std::string kShutdown =
    R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}})"
    "\r\n";
const std::string kReturn = R"({"return": {}, "id": 7})"
                            "\r\n";
}  // namespace

TEST_CASE("several QMP messages in one read are all returned", "[qmp]") {
  QmpStream s;
  auto msgs = s.Feed(kGreeting + kReturn + kShutdown);
  REQUIRE(msgs.size() == 3);
  CHECK(msgs[0].contains("QMP"));
  CHECK(msgs[1]["id"] == 7);
  CHECK(msgs[2]["event"] == "SHUTDOWN");
  CHECK(msgs[2]["data"]["guest"] == true);
  CHECK_FALSE(s.failed());
}

TEST_CASE("a QMP message split at every byte is reassembled", "[qmp]") {
  const std::string all = kGreeting + kShutdown + kReturn;
  for (size_t cut = 1; cut < all.size(); ++cut) {
    QmpStream s;
    auto a = s.Feed(all.substr(0, cut));
    auto b = s.Feed(all.substr(cut));
    a.insert(a.end(), b.begin(), b.end());
    REQUIRE(a.size() == 3);
    CHECK(a[1]["event"] == "SHUTDOWN");
  }
  QmpStream bytewise;
  size_t n = 0;
  for (char c : all) n += bytewise.Feed(std::string(1, c)).size();
  CHECK(n == 3);
}

TEST_CASE("braces and quotes inside strings do not confuse the splitter", "[qmp]") {
  QmpStream s;
  auto msgs = s.Feed(R"({"error": {"class": "GenericError", "desc": "a } \" { ] ["}, "id": 1})"
                     R"({"return": {}})");
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0]["error"]["desc"] == "a } \" { ] [");
}

TEST_CASE("garbage between messages fails the stream", "[qmp]") {
  QmpStream s;
  s.Feed("xyz");
  CHECK(s.failed());
  CHECK(s.Feed(kReturn).empty());  // sticky
}

TEST_CASE("an unbounded message fails instead of growing forever", "[qmp]") {
  QmpStream s;
  s.Feed("{\"a\": \"");
  std::string chunk(64 * 1024, 'x');
  for (int i = 0; i < 20 && !s.failed(); ++i) s.Feed(chunk);
  CHECK(s.failed());
}

TEST_CASE("a deeply nested message fails the stream instead of the daemon's stack", "[qmp]") {
  QmpStream s;
  const std::string deep = "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}";
  CHECK(s.Feed(deep).empty());
  CHECK(s.failed());
  QmpStream ok;
  const std::string shallow = "{\"a\":" + std::string(50, '[') + std::string(50, ']') + "}";
  CHECK(ok.Feed(shallow).size() == 1);
}
