#include "daemon/store/machine_store.h"

#include <google/protobuf/util/json_util.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/names.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {

namespace fs = std::filesystem;

std::string MachineStore::ToJson(const cove::v1::Machine& machine) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(machine, &out, options);
  return out;
}

absl::StatusOr<cove::v1::Machine> MachineStore::FromJson(const std::string& json) {
  cove::v1::Machine machine;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto st = google::protobuf::util::JsonStringToMessage(json, &machine, options);
  if (!st.ok()) return absl::DataLossError(std::string(st.message()));
  if (machine.name().empty()) return absl::DataLossError("no machine name in it");
  return machine;
}

absl::StatusOr<cove::v1::Machine> MachineStore::Load(const std::string& name) {
  auto text = ReadFile(json_path(name));
  if (!text.ok()) return text.status();
  auto machine = FromJson(*text);
  if (!machine.ok()) return machine.status();
  if (machine->name() != name) {
    return absl::DataLossError(
        absl::StrCat("it names machine \"", machine->name(), "\" but lives in \"", name, "\""));
  }
  return machine;
}

absl::Status MachineStore::Save(const cove::v1::Machine& machine) {
  return WriteFileAtomically(json_path(machine.name()), ToJson(machine));
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
    auto machine = Load(name);
    if (machine.ok()) {
      out.push_back(*std::move(machine));
      continue;
    }
    cove::v1::Machine broken;
    broken.set_name(name);
    broken.set_state(cove::v1::MACHINE_STATE_ERROR);
    broken.set_dir(dir(name));
    broken.set_error(absl::StrCat(json_path(name), " is unreadable (", machine.status().message(),
                                  "); repair it by hand or remove the machine with `cove delete ",
                                  name, "`"));
    spdlog::error("{}", broken.error());
    out.push_back(std::move(broken));
  }
  return out;
}

}  // namespace cove::daemon
