// Machine state transitions with a fake driver: the failure paths that a
// real VM cannot be made to take on demand. The happy path (boot, agent
// hello, stop) is tested for real in tests/integration.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>

#include "daemon/machine/machine_manager.h"
#include "test_util.h"

using namespace cove::daemon;
using cove::testing::TempDir;

namespace {

class FakeInstance : public VmInstance {
 public:
  explicit FakeInstance(VmCallbacks cb) : cb_(std::move(cb)) {}
  int pid() const override { return 4242; }
  bool RequestPowerdown() override {
    ++powerdowns;
    return true;
  }
  bool Quit() override {
    ++quits;
    return true;
  }
  void Kill() override { Exit({false, "killed"}); }
  void Exit(VmExit e) {
    auto cb = cb_.on_exit;
    cb(e);
  }
  void Stuck(const std::string& why) { cb_.on_stuck(why); }
  int powerdowns = 0, quits = 0;

 private:
  VmCallbacks cb_;
};

class FakeDriver : public Driver {
 public:
  MountSupport mount_support() const override { return {.ninep = true}; }
  absl::Status GrowDisk(const std::string&, uint64_t size) override {
    grown_to = size;
    return absl::OkStatus();
  }
  uint64_t grown_to = 0;
  absl::Status CreateDisk(const std::string&, const std::string& disk, uint64_t) override {
    cove::testing::WriteText(disk, "qcow2");
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<VmInstance>> Launch(const LaunchSpec& spec,
                                                     VmCallbacks cb) override {
    last_spec = spec;
    if (!launch_error.ok()) return launch_error;
    auto vm = std::make_unique<FakeInstance>(std::move(cb));
    last = vm.get();
    launches++;
    return vm;
  }
  absl::StatusOr<AccelReport> ProbeAccelerators(const std::string&, const std::string&,
                                                const std::string&, bool) const override {
    AccelReport report;
    if (kvm_usable) {
      report.verdicts.push_back(
          {.accel = cove::v1::ACCEL_KVM, .usable = true, .reason = "", .cpu = "host"});
    }
    report.verdicts.push_back({.accel = cove::v1::ACCEL_TCG, .usable = true});
    report.ChooseAuto();
    return report;
  }
  absl::StatusOr<std::unique_ptr<VmInstance>> Adopt(const LaunchSpec&, int, VmCallbacks) override {
    return absl::NotFoundError("gone");
  }
  absl::Status launch_error;
  bool kvm_usable = false;  // the probe says kvm works here
  FakeInstance* last = nullptr;
  int launches = 0;
  LaunchSpec last_spec;
};

struct Fixture {
  TempDir tmp;
  cove::HomeLayout layout{tmp.path()};
  EventLoop loop;
  EventBus events;
  MachineStore store{layout};
  ImageStore images{layout};
  FakeDriver driver;
  AccelResolver accel{loop, driver, tmp.path()};
  PortRegistry ports;
  std::unique_ptr<MachineEnv> env;
  std::unique_ptr<MachineManager> manager;
  std::string image_dir;

  Fixture() {
    std::filesystem::create_directories(layout.machines());
    image_dir = cove::testing::MakeFakeImage(tmp.path() + "/image");
    cove::testing::WriteText(tmp.path() + "/agent", "agent");
    env = std::make_unique<MachineEnv>(
        MachineEnv{loop, driver, store, images, events, accel, ports, tmp.path() + "/agent"});
    manager = std::make_unique<MachineManager>(*env);
  }
  Machine* Create(const std::string& name, cove::v1::Accel accel = cove::v1::ACCEL_TCG) {
    cove::v1::MachineSpec spec;
    spec.set_cpus(1);
    spec.set_memory_bytes(512ull << 20);
    spec.set_disk_bytes(1ull << 30);
    spec.set_arch("x86_64");
    spec.set_accel(accel);
    auto image = images.Load(image_dir, true);
    REQUIRE(image.ok());
    REQUIRE(manager->Create(name, spec, *image).ok());
    return *manager->Find(name);
  }
  void Spin() {
    for (int i = 0; i < 5; ++i) uv_run(loop.uv(), UV_RUN_NOWAIT);
  }
  // Runs the loop until `done` holds (work on the thread pool, timers), at
  // most `limit_ms`.
  bool SpinUntil(const std::function<bool()>& done, int limit_ms = 5000) {
    for (int waited = 0; waited < limit_ms; waited += 2) {
      uv_run(loop.uv(), UV_RUN_NOWAIT);
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return done();
  }
};

auto Ignore() {
  return [](int, const std::string&) {};
}

}  // namespace

TEST_CASE("create makes the directory, disk and machine.json", "[machine]") {
  Fixture f;
  Machine* m = f.Create("dev");
  CHECK(m->state() == cove::v1::MACHINE_STATE_STOPPED);
  CHECK(std::filesystem::exists(f.layout.machine_dir("dev") + "/machine.json"));
  CHECK(std::filesystem::exists(f.layout.machine_dir("dev") + "/disk.qcow2"));
  cove::v1::MachineSpec spec;
  spec.set_arch("x86_64");
  auto image = f.images.Load(f.image_dir, false);
  CHECK(absl::IsAlreadyExists(f.manager->Create("dev", spec, *image).status()));
  spec.set_arch("aarch64");
  CHECK(absl::IsInvalidArgument(f.manager->Create("other", spec, *image).status()));
  CHECK_FALSE(std::filesystem::exists(f.layout.machine_dir("other")));
}

TEST_CASE("a launch failure puts the machine in error with the reason", "[machine]") {
  Fixture f;
  Machine* m = f.Create("dev");
  f.driver.launch_error = absl::FailedPreconditionError("qemu-system-x86_64 is not installed");
  std::optional<absl::Status> result;
  m->Start(0, Ignore(), [&](absl::Status st) { result = st; });
  REQUIRE(f.SpinUntil([&]() { return result.has_value(); }));
  CHECK(absl::IsFailedPrecondition(*result));
  CHECK(m->state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK(m->view().error().find("not installed") != std::string::npos);
  // The reason is saved too.
  CHECK(f.store.Load("dev")->error().find("not installed") != std::string::npos);
}

TEST_CASE("qemu dying during start is an error, and the kernel cmdline names the machine",
          "[machine]") {
  Fixture f;
  Machine* m = f.Create("dev");
  std::optional<absl::Status> result;
  std::vector<int> phases;
  m->Start(
      0, [&](int p, const std::string&) { phases.push_back(p); },
      [&](absl::Status st) { result = st; });
  REQUIRE(f.SpinUntil([&]() { return f.driver.last != nullptr; }));
  CHECK(m->state() == cove::v1::MACHINE_STATE_STARTING);
  CHECK(f.driver.last_spec.cmdline.find("cove.hostname=dev") != std::string::npos);
  CHECK(phases.back() == cove::v1::START_PHASE_WAITING_FOR_AGENT);

  absl::Status second;
  m->Start(0, Ignore(), [&](absl::Status st) { second = st; });
  CHECK(absl::IsFailedPrecondition(second));  // one operation at a time

  f.driver.last->Exit({false, "qemu exited with status 1: boom"});
  f.Spin();
  REQUIRE(result.has_value());
  CHECK(absl::IsAborted(*result));
  CHECK(m->state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK(m->view().error().find("boom") != std::string::npos);
  CHECK(m->view().pid() == 0);
}

TEST_CASE("stop during start cancels it and ends stopped", "[machine]") {
  Fixture f;
  Machine* m = f.Create("dev");
  std::optional<absl::Status> started, stopped;
  m->Start(0, Ignore(), [&](absl::Status st) { started = st; });
  m->Stop(/*force=*/true, 0, Ignore(), [&](absl::Status st) { stopped = st; });
  f.Spin();
  REQUIRE(started.has_value());
  CHECK(absl::IsCancelled(*started));
  REQUIRE(stopped.has_value());
  CHECK(stopped->ok());
  CHECK(m->state() == cove::v1::MACHINE_STATE_STOPPED);
}

TEST_CASE("stop of a stopped machine succeeds and changes nothing", "[machine]") {
  Fixture f;
  Machine* m = f.Create("dev");
  std::optional<absl::Status> stopped;
  m->Stop(false, 0, Ignore(), [&](absl::Status st) { stopped = st; });
  REQUIRE(stopped.has_value());
  CHECK(stopped->ok());
  CHECK(m->state() == cove::v1::MACHINE_STATE_STOPPED);
}

TEST_CASE("delete refuses a busy machine without force and removes a stopped one", "[machine]") {
  Fixture f;
  Machine* m = f.Create("dev");
  m->Start(0, Ignore(), [](absl::Status) {});
  std::optional<absl::Status> deleted;
  f.manager->Delete("dev", false, [&](absl::Status st) { deleted = st; });
  REQUIRE(deleted.has_value());
  CHECK(absl::IsFailedPrecondition(*deleted));
  CHECK(std::string(deleted->message()).find("--force") != std::string::npos);
  deleted.reset();
  f.manager->Delete("dev", true, [&](absl::Status st) { deleted = st; });
  f.Spin();
  REQUIRE(deleted.has_value());
  CHECK(deleted->ok());
  CHECK_FALSE(std::filesystem::exists(f.layout.machine_dir("dev")));
  CHECK(absl::IsNotFound(f.manager->Find("dev").status()));
}

TEST_CASE("a machine left running by an earlier coved whose qemu is gone loads as stopped",
          "[machine]") {
  Fixture f;
  cove::v1::Machine record;
  record.set_name("old");
  record.set_state(cove::v1::MACHINE_STATE_RUNNING);
  record.set_pid(999999);
  record.set_dir(f.layout.machine_dir("old"));
  std::filesystem::create_directories(record.dir());
  REQUIRE(f.store.Save(record).ok());
  f.manager->LoadAll();
  auto m = f.manager->Find("old");
  REQUIRE(m.ok());
  CHECK((*m)->state() == cove::v1::MACHINE_STATE_STOPPED);
  CHECK((*m)->view().pid() == 0);
}

TEST_CASE("a foreign-architecture guest without its agent fails to start with a reason",
          "[machine]") {
  Fixture f;
  const std::string foreign = HostArch() == "x86_64" ? "aarch64" : "x86_64";
  const std::string arm_image = cove::testing::MakeFakeImage(f.tmp.path() + "/arm", foreign);
  cove::v1::MachineSpec spec;
  spec.set_cpus(1);
  spec.set_memory_bytes(512ull << 20);
  spec.set_disk_bytes(1ull << 30);
  spec.set_arch(foreign);
  spec.set_accel(cove::v1::ACCEL_TCG);
  auto image = f.images.Load(arm_image, true);
  REQUIRE(image.ok());
  REQUIRE(f.manager->Create("arm", spec, *image).ok());
  Machine* m = *f.manager->Find("arm");
  absl::Status result;
  m->Start(0, Ignore(), [&](absl::Status st) { result = st; });
  CHECK(absl::IsFailedPrecondition(result));
  CHECK(std::string(result.message()).find("no cove-agent for " + foreign) != std::string::npos);
  CHECK(m->state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK(f.driver.last == nullptr);  // qemu was never launched
}

TEST_CASE("the on-failure policy restarts a crashed machine up to its limit", "[machine]") {
  Fixture f;
  Machine* m = f.Create("dev");
  Machine::Settings settings;
  settings.restart = std::make_pair(cove::v1::RESTART_POLICY_ON_FAILURE, 1u);
  REQUIRE(m->ChangeSettings(settings).ok());
  m->Start(0, Ignore(), [](absl::Status) {});
  REQUIRE(f.SpinUntil([&]() { return f.driver.last != nullptr; }));
  f.driver.last->Exit({false, "qemu was killed by signal 9 (Killed)"});
  f.Spin();
  CHECK(m->state() == cove::v1::MACHINE_STATE_ERROR);
  // After the 1 s backoff, a second qemu.
  REQUIRE(f.SpinUntil([&]() { return f.driver.launches == 2; }, 4000));
  CHECK(m->state() == cove::v1::MACHINE_STATE_STARTING);
  CHECK(m->view().restarts() == 1);
  f.driver.last->Exit({false, "qemu was killed by signal 9 (Killed)"});
  f.Spin();
  CHECK(m->state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK(m->view().error().find("not restarted") != std::string::npos);

  // A client's start resets the count.
  m->Start(0, Ignore(), [](absl::Status) {});
  CHECK(m->view().restarts() == 0);
}

// The accelerator's trial (docs/accel.md): a probe can pass where a real
// kernel cannot run (this project's CI host is such a one), so the first boot
// under an automatic choice is on trial. This host has no /dev/kvm, so the
// path is driven here with a fake driver whose probe says kvm works.
namespace {

// COVE_ACCEL=tcg (as CI may set for coved) would skip the choice altogether.
struct NoAccelOverride {
  std::optional<std::string> saved;
  NoAccelOverride() {
    if (const char* v = std::getenv("COVE_ACCEL")) saved = v;
    unsetenv("COVE_ACCEL");
  }
  ~NoAccelOverride() {
    if (saved) setenv("COVE_ACCEL", saved->c_str(), 1);
  }
};

}  // namespace

TEST_CASE("auto boots under kvm on trial; qemu naming kvm before any output falls back to tcg",
          "[machine][accel]") {
  NoAccelOverride no_override;
  Fixture f;
  f.driver.kvm_usable = true;
  Machine* m = f.Create("dev", cove::v1::ACCEL_AUTO);
  std::vector<std::pair<int, std::string>> phases;
  std::optional<absl::Status> result;
  m->Start(
      0, [&](int p, const std::string& text) { phases.emplace_back(p, text); },
      [&](absl::Status st) { result = st; });
  REQUIRE(f.SpinUntil([&]() { return f.driver.launches == 1; }));
  CHECK(f.driver.last_spec.accel == cove::v1::ACCEL_KVM);
  CHECK(f.driver.last_spec.cpu == "host");
  CHECK(m->view().accel_in_use() == cove::v1::ACCEL_KVM);

  // No console output yet (the fake writes no serial log).
  f.driver.last->Exit({false, "qemu exited with status 1: KVM internal error. Suberror: 1"});
  REQUIRE(f.SpinUntil([&]() { return f.driver.launches == 2; }));
  CHECK(f.driver.last_spec.accel == cove::v1::ACCEL_TCG);
  CHECK(m->state() == cove::v1::MACHINE_STATE_STARTING);  // the same start goes on
  CHECK_FALSE(result.has_value());
  CHECK(m->view().accel_in_use() == cove::v1::ACCEL_TCG);
  CHECK(m->view().accel_reason().find("auto: kvm unusable here: qemu exited with status 1: KVM "
                                      "internal error") == 0);
  CHECK(std::any_of(phases.begin(), phases.end(), [](const auto& p) {
    return p.first == cove::v1::START_PHASE_ACCEL_FALLBACK &&
           p.second.find("booting again under tcg") != std::string::npos;
  }));
  // The verdict is this host's from now on: the next automatic start goes
  // straight to tcg.
  auto report = f.accel.Report("x86_64");
  REQUIRE(report.has_value());
  REQUIRE(report->ok());
  CHECK((*report)->auto_accel == cove::v1::ACCEL_TCG);
  const AccelVerdict* kvm = (*report)->Find(cove::v1::ACCEL_KVM);
  REQUIRE(kvm != nullptr);
  CHECK_FALSE(kvm->usable);
  CHECK(kvm->checked_by == "boot");
  CHECK(kvm->reason.find("machine 'dev'") != std::string::npos);

  Machine* other = f.Create("other", cove::v1::ACCEL_AUTO);
  other->Start(0, Ignore(), [](absl::Status) {});
  REQUIRE(f.SpinUntil([&]() { return f.driver.launches == 3; }));
  CHECK(f.driver.last_spec.accel == cove::v1::ACCEL_TCG);
}

TEST_CASE("a guest that hangs under kvm on trial is killed and booted again under tcg",
          "[machine][accel]") {
  NoAccelOverride no_override;
  Fixture f;
  f.driver.kvm_usable = true;
  Machine* m = f.Create("dev", cove::v1::ACCEL_AUTO);
  m->Start(0, Ignore(), [](absl::Status) {});
  REQUIRE(f.SpinUntil([&]() { return f.driver.launches == 1; }));
  // The driver saw the vCPU stop for good ("KVM internal error" on a live
  // qemu, or a guest panic).
  f.driver.last->Stuck("the vCPU stopped: KVM internal error");
  REQUIRE(f.SpinUntil([&]() { return f.driver.launches == 2; }));
  CHECK(f.driver.last_spec.accel == cove::v1::ACCEL_TCG);
  CHECK(m->state() == cove::v1::MACHINE_STATE_STARTING);
  CHECK(m->view().accel_reason().find("the vCPU stopped") != std::string::npos);
}

TEST_CASE("--accel kvm that fails is an error naming the fix, with no fallback",
          "[machine][accel]") {
  NoAccelOverride no_override;
  Fixture f;
  f.driver.kvm_usable = true;
  Machine* m = f.Create("dev", cove::v1::ACCEL_KVM);
  std::optional<absl::Status> result;
  m->Start(0, Ignore(), [&](absl::Status st) { result = st; });
  REQUIRE(f.SpinUntil([&]() { return f.driver.launches == 1; }));
  CHECK(f.driver.last_spec.accel == cove::v1::ACCEL_KVM);
  f.driver.last->Stuck("the vCPU stopped: KVM internal error");
  REQUIRE(f.SpinUntil([&]() { return result.has_value(); }));
  CHECK_FALSE(result->ok());
  CHECK(f.driver.launches == 1);
  CHECK(m->state() == cove::v1::MACHINE_STATE_ERROR);
  CHECK(m->view().error().find("cove set dev --accel auto") != std::string::npos);
}
