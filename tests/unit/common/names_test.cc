#include "common/names.h"

#include <catch2/catch.hpp>

using cove::ValidateName;

TEST_CASE("good machine names pass", "[names]") {
  for (const char* name : {"default", "dev", "web-2", "a", "x1"}) {
    CHECK(ValidateName(name).ok());
  }
  CHECK(ValidateName(std::string(63, 'a')).ok());
}

TEST_CASE("bad machine names are refused with the rule in the message", "[names]") {
  for (const std::string& name :
       {std::string(""), std::string("../x"), std::string(64, 'a'), std::string("Dev"),
        std::string("1abc"), std::string("a_b"), std::string("a/b"), std::string("dev-"),
        std::string("-dev"), std::string("a b"), std::string(".."), std::string("dév")}) {
    auto st = ValidateName(name);
    INFO(name);
    CHECK(absl::IsInvalidArgument(st));
    CHECK(std::string(st.message()).find("a-z, 0-9 and '-'") != std::string::npos);
  }
}
