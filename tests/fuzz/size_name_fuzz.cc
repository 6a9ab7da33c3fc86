// Fuzzes the parsers of what users type on the command line: cove::ParseSize
// and cove::ValidateName. The whole input is the text given to both.
//
// Invariants (a violation traps, so libFuzzer keeps the input):
//  - ValidateName is OK exactly when the name matches [a-z][a-z0-9-]{0,62} and
//    does not end with '-' (names become directory and socket path parts);
//  - ParseSize OK means a value above zero, and when FormatSize prints that
//    value as a whole number of its unit, ParseSize reads it back unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/names.h"
#include "common/sizes.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// The documented name rule, written independently of common/names.cc.
bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > cove::kMaxNameLength) return false;
  if (name.front() < 'a' || name.front() > 'z' || name.back() == '-') return false;
  for (char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!allowed) return false;
  }
  return true;
}

// True when FormatSize prints `bytes` without a fraction: below 1 KiB as
// bytes, otherwise as a multiple of the largest unit not above it.
bool FormatsAsWholeUnits(uint64_t bytes) {
  for (uint64_t unit : {cove::kTiB, cove::kGiB, cove::kMiB, cove::kKiB}) {
    if (bytes >= unit) return bytes % unit == 0;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);

  const absl::Status name_status = cove::ValidateName(text, "machine");
  Check(name_status.ok() == IsValidName(text));
  if (!name_status.ok()) Check(!name_status.message().empty());

  const absl::StatusOr<uint64_t> bytes = cove::ParseSize(text, "--memory");
  if (!bytes.ok()) {
    Check(!bytes.status().message().empty());
    return 0;
  }
  Check(*bytes > 0);
  if (FormatsAsWholeUnits(*bytes)) {
    const std::string printed = cove::FormatSize(*bytes);
    const absl::StatusOr<uint64_t> again = cove::ParseSize(printed, "--memory");
    Check(again.ok() && *again == *bytes);
  }
  return 0;
}
