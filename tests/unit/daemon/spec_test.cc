#include "daemon/machine/spec.h"

#include <catch2/catch.hpp>

using namespace cove::daemon;

namespace {
HostResources Host() {
  HostResources h;
  h.cpus = 2;
  h.memory_bytes = 24ull << 30;
  h.disk_bytes = 250ull << 30;
  h.arch = "x86_64";
  return h;
}
}  // namespace

TEST_CASE("an empty spec gets the defaults", "[spec]") {
  auto spec = NormalizeSpec({}, Host());
  REQUIRE(spec.ok());
  CHECK(spec->cpus() == 2);
  CHECK(spec->memory_bytes() == 2ull << 30);
  CHECK(spec->disk_bytes() == 20ull << 30);
  CHECK(spec->arch() == "x86_64");
  CHECK(spec->accel() == cove::v1::ACCEL_AUTO);
}

TEST_CASE("foreign binaries are on unless a spec says off", "[spec]") {
  auto on = NormalizeSpec({}, Host());
  REQUIRE(on.ok());
  CHECK(on->has_foreign_binaries());  // filled in, so clients see it
  CHECK(on->foreign_binaries());
  cove::v1::MachineSpec off;
  off.set_foreign_binaries(false);
  auto kept = NormalizeSpec(off, Host());
  REQUIRE(kept.ok());
  CHECK_FALSE(kept->foreign_binaries());
}

TEST_CASE("arch aliases are normalized", "[spec]") {
  cove::v1::MachineSpec in;
  in.set_arch("arm64");
  CHECK(NormalizeSpec(in, Host())->arch() == "aarch64");
  in.set_arch("sparc");
  CHECK(absl::IsInvalidArgument(NormalizeSpec(in, Host()).status()));
}

TEST_CASE("sizes beyond the host are refused", "[spec]") {
  cove::v1::MachineSpec in;
  in.set_cpus(3);
  CHECK(absl::IsResourceExhausted(NormalizeSpec(in, Host()).status()));
  in = {};
  in.set_memory_bytes(25ull << 30);
  CHECK(absl::IsResourceExhausted(NormalizeSpec(in, Host()).status()));
  in = {};
  in.set_memory_bytes(100ull << 20);
  CHECK(absl::IsInvalidArgument(NormalizeSpec(in, Host()).status()));
  in = {};
  in.set_disk_bytes(300ull << 30);
  CHECK(absl::IsResourceExhausted(NormalizeSpec(in, Host()).status()));
}

TEST_CASE("hardware accelerators must fit host and guest", "[spec]") {
  cove::v1::MachineSpec in;
  in.set_accel(cove::v1::ACCEL_HVF);
  CHECK(absl::IsInvalidArgument(NormalizeSpec(in, Host()).status()));
  in.set_accel(cove::v1::ACCEL_KVM);
  in.set_arch("aarch64");
  auto st = NormalizeSpec(in, Host()).status();
  CHECK(absl::IsInvalidArgument(st));
  CHECK(std::string(st.message()).find("--accel tcg") != std::string::npos);
  in.set_accel(cove::v1::ACCEL_TCG);
  CHECK(NormalizeSpec(in, Host()).ok());
}

TEST_CASE("the restart policy gets its default limit and bounds", "[spec]") {
  cove::v1::MachineSpec in;
  auto spec = NormalizeSpec(in, Host());
  REQUIRE(spec.ok());
  CHECK(spec->restart() == cove::v1::RESTART_POLICY_NEVER);
  CHECK(spec->max_restarts() == 0);

  in.set_restart(cove::v1::RESTART_POLICY_ON_FAILURE);
  spec = NormalizeSpec(in, Host());
  REQUIRE(spec.ok());
  CHECK(spec->max_restarts() == kDefaultMaxRestarts);

  in.set_max_restarts(kMaxRestarts + 1);
  spec = NormalizeSpec(in, Host());
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.status().message().find("on-failure:N") != std::string::npos);

  in.set_restart(cove::v1::RESTART_POLICY_NEVER);
  in.set_max_restarts(2);
  spec = NormalizeSpec(in, Host());
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.status().message().find("needs the on-failure policy") != std::string::npos);
}
