#include "daemon/store/machine_store.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/names.h"
#include "daemon/store/machine_record.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

namespace fs = std::filesystem;

struct MachineStore::Loaded {
  ParsedRecord parsed;
  std::string text;  // the file as it was read
};

std::string MachineStore::ToJson(const cove::v1::Machine& machine) {
  return RecordToJson(ToRecord(machine));
}

absl::StatusOr<cove::v1::Machine> MachineStore::FromJson(const std::string& json) {
  auto parsed = ParseRecordJson(json);
  if (!parsed.ok()) return parsed.status();
  return FromRecord(parsed->record);
}

absl::StatusOr<MachineStore::Loaded> MachineStore::LoadRecord(const std::string& name) {
  auto text = ReadFile(json_path(name));
  if (!text.ok()) return text.status();
  auto parsed = ParseRecordJson(*text);
  if (!parsed.ok()) return parsed.status();
  if (parsed->record.name() != name) {
    return absl::DataLossError(absl::StrCat("it names machine \"", parsed->record.name(),
                                            "\" but lives in \"", name, "\""));
  }
  return Loaded{*std::move(parsed), *std::move(text)};
}

absl::StatusOr<cove::v1::Machine> MachineStore::Load(const std::string& name) {
  auto loaded = LoadRecord(name);
  if (!loaded.ok()) return loaded.status();
  return FromRecord(loaded->parsed.record);
}

absl::Status MachineStore::Save(const cove::v1::Machine& machine) {
  // Only LoadAll's stand-in for a file it could not read is in error without
  // a spec (every created machine has one). That file is the user's to
  // repair, or a newer cove's: never overwritten.
  if (!machine.has_spec() && machine.state() == cove::v1::MACHINE_STATE_ERROR) {
    return absl::FailedPreconditionError(
        absl::StrCat("machine '", machine.name(),
                     "' has no spec: its machine.json did not load (see the machine's error), so "
                     "it is left as it is"));
  }
  return WriteFileAtomically(json_path(machine.name()), ToJson(machine));
}

absl::Status MachineStore::Upgrade(const std::string& name, const Loaded& loaded) {
  // The old text stays beside the new file: what an older cove reads, should
  // the user go back to one, and the evidence if a migration went wrong. It
  // is not kept up to date: changes after the upgrade are only in
  // machine.json.
  const std::string backup = absl::StrCat(json_path(name), ".v", loaded.parsed.file_version);
  if (auto st = WriteFileAtomically(backup, loaded.text); !st.ok()) return st;
  return WriteFileAtomically(json_path(name), RecordToJson(loaded.parsed.record));
}

void MachineStore::RemoveTempFiles(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!absl::StartsWith(entry.path().filename().string(), ".tmp-")) continue;
    spdlog::warn("removing {}: left by an interrupted write", entry.path().string());
    fs::remove(entry.path(), ec);
  }
}

std::string MachineStore::deleting_dir(const std::string& name) const {
  return layout_.machines() + "/.deleting-" + name;
}

std::vector<cove::v1::Machine> MachineStore::LoadAll() {
  std::vector<cove::v1::Machine> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(layout_.machines(), ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory()) continue;
    if (absl::StartsWith(name, ".creating-") || absl::StartsWith(name, ".deleting-")) {
      spdlog::warn("removing {}: left by an interrupted {}", entry.path().string(),
                   name[1] == 'c' ? "create" : "delete");
      fs::remove_all(entry.path(), ec);
      continue;
    }
    if (!ValidateName(name).ok()) continue;
    RemoveTempFiles(entry.path().string());
    auto loaded = LoadRecord(name);
    if (loaded.ok()) {
      if (loaded->parsed.file_version < kMachineRecordVersion) {
        if (auto st = Upgrade(name, *loaded); st.ok()) {
          spdlog::info("{}: machine.json rewritten from format {} to {} (the old file is {}.v{})",
                       name, loaded->parsed.file_version, kMachineRecordVersion, json_path(name),
                       loaded->parsed.file_version);
        } else {
          // It still loads as it is; the next save writes the new format.
          spdlog::warn("{}: cannot rewrite machine.json in format {}: {}", name,
                       kMachineRecordVersion, std::string(st.message()));
        }
      }
      out.push_back(FromRecord(loaded->parsed.record));
      continue;
    }
    cove::v1::Machine broken;
    broken.set_name(name);
    broken.set_state(cove::v1::MACHINE_STATE_ERROR);
    broken.set_dir(dir(name));
    if (absl::IsFailedPrecondition(loaded.status())) {
      broken.set_error(absl::StrCat(json_path(name),
                                    " cannot be read by this coved: ", loaded.status().message(),
                                    " to use machine '", name, "'; the file is left as it is"));
    } else {
      broken.set_error(absl::StrCat(json_path(name), " is unreadable (", loaded.status().message(),
                                    "); repair it by hand or remove the machine with `cove delete ",
                                    name, "`"));
    }
    spdlog::error("{}", broken.error());
    out.push_back(std::move(broken));
  }
  return out;
}

}  // namespace cove::daemon
