#include "common/sizes.h"

#include <catch2/catch.hpp>

using cove::kGiB;
using cove::kMiB;
using cove::ParseSize;

TEST_CASE("sizes parse as users type them", "[sizes]") {
  CHECK(*ParseSize("4GiB", "--memory") == 4 * kGiB);
  CHECK(*ParseSize("512MiB", "--memory") == 512 * kMiB);
  CHECK(*ParseSize("20", "--disk") == 20 * kGiB);  // plain number: GiB, as Colima
  CHECK(*ParseSize("2G", "--disk") == 2 * kGiB);
  CHECK(*ParseSize("1.5GiB", "--memory") == 3 * kGiB / 2);
  CHECK(*ParseSize(" 8 gib ", "--memory") == 8 * kGiB);
  CHECK(*ParseSize("100b", "--disk") == 100);
}

TEST_CASE("bad sizes are refused and name the flag", "[sizes]") {
  for (const char* text :
       {"", "0", "-1", "-2GiB", "abc", "4XB", "1.5B", "1e400", "99999999999T", "GiB", "0.0"}) {
    INFO(text);
    auto r = ParseSize(text, "--memory");
    REQUIRE_FALSE(r.ok());
    CHECK(std::string(r.status().message()).find("--memory") != std::string::npos);
  }
}

TEST_CASE("sizes format compactly", "[sizes]") {
  CHECK(cove::FormatSize(2 * kGiB) == "2GiB");
  CHECK(cove::FormatSize(512 * kMiB) == "512MiB");
  CHECK(cove::FormatSize(3 * kGiB / 2) == "1.5GiB");
  CHECK(cove::FormatSize(100) == "100B");
}
