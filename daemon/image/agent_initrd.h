// The agent reaches the guest with the initrd: at every start coved writes
// the machine's initrd as the image's (an uncompressed cpio) followed by a
// second newc cpio holding cove/cove-agent. The kernel unpacks both, so the
// guest always runs the agent of the installed cove and no image needs a
// rebuild when cove is upgraded.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace cove::daemon {

// A newc ("070701") cpio archive with directory `cove` and the file
// `cove/cove-agent` (mode 0755) holding `agent_binary`, and a trailer.
std::string MakeAgentCpio(const std::string& agent_binary);

// Writes `out_path` = contents of `image_initrd` + MakeAgentCpio(agent file),
// atomically.
absl::Status WriteMachineInitrd(const std::string& image_initrd, const std::string& agent_path,
                                const std::string& out_path);

}  // namespace cove::daemon
