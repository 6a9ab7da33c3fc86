#include "daemon/image/agent_initrd.h"

#include <catch2/catch.hpp>

#include "common/atomic_file.h"
#include "common/subprocess.h"
#include "test_util.h"

using cove::testing::TempDir;
using cove::testing::WriteText;

TEST_CASE("the agent cpio is a valid newc archive that cpio(1) can list", "[initrd]") {
  TempDir tmp;
  WriteText(tmp.path() + "/base.img", "BASE");  // not 4-aligned on purpose
  WriteText(tmp.path() + "/agent", std::string(1001, 'A'));
  REQUIRE(cove::daemon::WriteMachineInitrd(tmp.path() + "/base.img", tmp.path() + "/agent",
                                           tmp.path() + "/out.img")
              .ok());
  // The appended archive starts at the next 4-byte boundary after the base.
  auto all = cove::ReadFile(tmp.path() + "/out.img");
  REQUIRE(all.ok());
  CHECK(all->substr(0, 4) == "BASE");
  WriteText(tmp.path() + "/agent.cpio", all->substr(4));
  auto listing = cove::RunCommand({"cpio", "-itv", "-F", tmp.path() + "/agent.cpio"},
                                  std::chrono::seconds(10));
  REQUIRE(listing.ok());
  INFO(listing->output);
  CHECK(listing->ok());
  CHECK(listing->output.find("cove/cove-agent") != std::string::npos);
  CHECK(listing->output.find("1001") != std::string::npos);
  CHECK(listing->output.find("-rwxr-xr-x") != std::string::npos);
}

TEST_CASE("a missing agent binary is a clear error", "[initrd]") {
  TempDir tmp;
  WriteText(tmp.path() + "/base.img", "BASE");
  auto st = cove::daemon::WriteMachineInitrd(tmp.path() + "/base.img", tmp.path() + "/nope",
                                             tmp.path() + "/out.img");
  CHECK(absl::IsFailedPrecondition(st));
  CHECK(std::string(st.message()).find("COVE_AGENT_PATH") != std::string::npos);
}
