#include "daemon/machine/machine_manager.h"

#include <google/protobuf/util/time_util.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/api_names.h"
#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/names.h"
#include "common/paths.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

namespace fs = std::filesystem;

void MachineManager::LoadAll() {
  for (auto& record : env_.store.LoadAll()) {
    const std::string name = record.name();
    auto machine = std::make_unique<Machine>(env_, std::move(record));
    machine->Adopt();
    machines_[name] = std::move(machine);
  }
  spdlog::info("loaded {} machine(s)", machines_.size());
}

void MachineManager::Autostart() {
  for (auto& [key, m] : machines_) {
    const std::string name = key;  // a lambda below captures it
    const auto state = m->state();
    if (!m->view().spec().autostart() ||
        (state != cove::v1::MACHINE_STATE_STOPPED && state != cove::v1::MACHINE_STATE_ERROR)) {
      continue;
    }
    spdlog::info("{}: autostart", name);
    m->Start(
        0, [](int, const std::string&) {},
        [name](const absl::Status& st) {
          if (!st.ok()) spdlog::warn("{}: autostart failed: {}", name, std::string(st.message()));
        });
  }
}

absl::StatusOr<cove::v1::Machine> MachineManager::Create(const std::string& name,
                                                         const cove::v1::MachineSpec& spec,
                                                         const ImageInfo& image) {
  if (auto st = ValidateName(name); !st.ok()) return st;
  if (machines_.count(name)) {
    return WithReason(absl::AlreadyExistsError(absl::StrCat(
                          "a machine named '", name,
                          "' already exists; pick another name or `cove delete ", name, "` first")),
                      cove::v1::NAME_TAKEN, {{"machine", name}});
  }
  if (image.arch != spec.arch()) {
    return WithReason(
        absl::InvalidArgumentError(absl::StrCat(
            "image ", image.path, " is for ", image.arch, " but the machine is ", spec.arch(),
            "; build an image with `cove image build --arch ", spec.arch(), "`")),
        cove::v1::IMAGE_ARCH_MISMATCH, {{"image", image.path}, {"arch", image.arch}});
  }
  if (spec.disk_bytes() < image.rootfs_size_bytes) {
    return WithReason(
        absl::InvalidArgumentError(absl::StrCat("--disk is smaller than the image's root disk (",
                                                image.rootfs_size_bytes, " bytes)")),
        cove::v1::INVALID_SPEC, {{"field", "spec.disk_bytes"}});
  }
  const std::string dir = env_.store.dir(name);
  for (const char* sock : {"/qmp.sock", "/agent.sock"}) {
    if (auto st = CheckSocketPath(dir + sock); !st.ok()) return st;
  }

  // Assemble in a staging directory, then rename: a crash never leaves a
  // half-made machine under its name.
  const std::string staging = env_.store.staging_dir(name);
  std::error_code ec;
  fs::remove_all(staging, ec);
  if (!fs::create_directories(staging, ec) || ec) {
    return absl::InternalError(absl::StrCat("cannot create ", staging, ": ", ec.message()));
  }
  fs::permissions(staging, fs::perms::owner_all, ec);
  auto cleanup = [&]() { fs::remove_all(staging, ec); };

  if (auto st = env_.driver.CreateDisk(image.rootfs, staging + "/disk.qcow2", spec.disk_bytes());
      !st.ok()) {
    cleanup();
    return st;
  }
  cove::v1::Machine record;
  record.set_name(name);
  record.set_state(cove::v1::MACHINE_STATE_STOPPED);
  *record.mutable_spec() = spec;
  record.set_dir(dir);
  record.mutable_image()->set_name(image.name);
  record.mutable_image()->set_path(image.path);
  auto it = image.sha256.find("rootfs.img");
  if (it != image.sha256.end()) record.mutable_image()->set_rootfs_sha256(it->second);
  *record.mutable_created_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  auto* paths = record.mutable_paths();
  paths->set_serial_log(dir + "/serial.log");
  paths->set_debug_qmp_socket(dir + "/qmp.sock");
  paths->set_debug_agent_socket(dir + "/agent.sock");
  paths->set_disk(dir + "/disk.qcow2");

  // machine.json goes into the staging directory; it names the final paths.
  if (auto st = WriteFileAtomically(staging + "/machine.json", MachineStore::ToJson(record));
      !st.ok()) {
    cleanup();
    return st;
  }
  fs::rename(staging, dir, ec);
  if (ec) {
    cleanup();
    return absl::InternalError(
        absl::StrCat("cannot rename ", staging, " to ", dir, ": ", ec.message()));
  }
  machines_[name] = std::make_unique<Machine>(env_, record);
  spdlog::info("{}: created ({} CPUs, {} bytes memory, {} bytes disk, {})", name, spec.cpus(),
               spec.memory_bytes(), spec.disk_bytes(), image.path);
  cove::v1::Event event;
  event.set_kind(cove::v1::EVENT_KIND_MACHINE_CREATED);
  event.set_machine_name(name);
  *event.mutable_machine() = record;
  event.set_message("created");
  env_.events.Publish(std::move(event));
  return record;
}

absl::StatusOr<Machine*> MachineManager::Find(const std::string& name) {
  if (auto st = ValidateName(name); !st.ok()) {
    return OrReason(st, cove::v1::INVALID_NAME, {{"field", "name"}});
  }
  auto it = machines_.find(name);
  if (it == machines_.end()) {
    return WithReason(
        absl::NotFoundError(absl::StrCat("no machine named '", name,
                                         "'; `cove list` shows the machines there are")),
        cove::v1::MACHINE_NOT_FOUND, {{"machine", name}});
  }
  return it->second.get();
}

void MachineManager::Delete(const std::string& name, bool force, Machine::Done done) {
  auto machine = Find(name);
  if (!machine.ok()) return done(machine.status());
  Machine* m = *machine;
  const auto state = m->state();
  const bool down =
      state == cove::v1::MACHINE_STATE_STOPPED || state == cove::v1::MACHINE_STATE_ERROR;
  if (down && m->view().pid() == 0) {
    Remove(name);
    return done(absl::OkStatus());
  }
  if (!force) {
    return done(WithReason(absl::FailedPreconditionError(absl::StrCat(
                               "machine '", name, "' is ",
                               state == cove::v1::MACHINE_STATE_RUNNING ? "running" : "busy",
                               "; stop it first (`cove stop ", name, "`) or pass --force")),
                           state == cove::v1::MACHINE_STATE_RUNNING ? cove::v1::MACHINE_NOT_STOPPED
                                                                    : cove::v1::MACHINE_BUSY,
                           {{"machine", name}, {"state", StateName(state)}}));
  }
  m->Stop(/*force=*/true, 0, [](int, const std::string&) {},
          [this, name, done = std::move(done)](const absl::Status& st) {
            if (!st.ok()) return done(st);
            // Let the machine finish its own callbacks before it goes.
            env_.loop.Post([this, name, done]() {
              Remove(name);
              done(absl::OkStatus());
            });
          });
}

void MachineManager::Remove(const std::string& name) {
  auto it = machines_.find(name);
  if (it == machines_.end()) return;
  const std::string dir = env_.store.dir(name);
  machines_.erase(it);
  // Out of sight first: a crash mid-delete must not leave half a machine.
  const std::string doomed = env_.store.deleting_dir(name);
  std::error_code ec;
  fs::rename(dir, doomed, ec);
  const std::string& gone = ec ? dir : doomed;
  fs::remove_all(gone, ec);
  if (ec) spdlog::error("{}: cannot remove {}: {}", name, gone, ec.message());
  spdlog::info("{}: deleted", name);
  cove::v1::Event event;
  event.set_kind(cove::v1::EVENT_KIND_MACHINE_DELETED);
  event.set_machine_name(name);
  event.set_message("deleted");
  env_.events.Publish(std::move(event));
}

void MachineManager::RefreshGuests(const std::string& name, std::function<void()> done) {
  // One count for each machine asked, plus one released below, so `done`
  // cannot run before every machine was asked.
  auto left = std::make_shared<size_t>(1);
  auto one_done = [left, done = std::move(done)]() {
    if (--*left == 0) done();
  };
  for (auto& [n, machine] : machines_) {
    if (!name.empty() && n != name) continue;
    ++*left;
    machine->RefreshGuest(one_done);
  }
  one_done();
}

std::vector<cove::v1::Machine> MachineManager::List() const {
  std::vector<cove::v1::Machine> out;
  out.reserve(machines_.size());
  for (const auto& [name, m] : machines_) out.push_back(m->view());
  return out;
}

std::vector<std::string> MachineManager::UsersOfImage(const std::string& path) const {
  std::vector<std::string> out;
  for (const auto& [name, m] : machines_) {
    if (m->view().image().path() == path) out.push_back(name);
  }
  return out;
}

}  // namespace cove::daemon
