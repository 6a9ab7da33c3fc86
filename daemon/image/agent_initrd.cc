#include "daemon/image/agent_initrd.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/atomic_file.h"

namespace cove::daemon {
namespace {

void PadTo4(std::string& out) {
  while (out.size() % 4 != 0) out.push_back('\0');
}

void AddEntry(std::string& out, uint32_t ino, uint32_t mode, const std::string& name,
              const std::string& data) {
  // newc header: magic then 13 eight-digit hex fields.
  absl::StrAppendFormat(&out, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino,
                        mode, 0, 0, 1, 0, static_cast<uint32_t>(data.size()), 0, 0, 0, 0,
                        static_cast<uint32_t>(name.size() + 1), 0);
  out.append(name);
  out.push_back('\0');
  PadTo4(out);
  out.append(data);
  PadTo4(out);
}

}  // namespace

std::string MakeAgentCpio(const std::string& agent_binary) {
  std::string out;
  AddEntry(out, 1, 040755, "cove", "");
  AddEntry(out, 2, 0100755, "cove/cove-agent", agent_binary);
  AddEntry(out, 0, 0, "TRAILER!!!", "");
  return out;
}

absl::Status WriteMachineInitrd(const std::string& image_initrd, const std::string& agent_path,
                                const std::string& out_path) {
  auto base = ReadFile(image_initrd);
  if (!base.ok()) return base.status();
  auto agent = ReadFile(agent_path);
  if (!agent.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("cove-agent not found at ", agent_path,
                                                      "; reinstall cove or set COVE_AGENT_PATH"));
  }
  std::string initrd = *std::move(base);
  PadTo4(initrd);
  initrd += MakeAgentCpio(*agent);
  return WriteFileAtomically(out_path, initrd, 0644);
}

}  // namespace cove::daemon
