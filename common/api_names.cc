#include "common/api_names.h"

namespace cove {

const char* StateName(cove::v1::MachineState state) {
  switch (state) {
    case cove::v1::MACHINE_STATE_STOPPED:
      return "stopped";
    case cove::v1::MACHINE_STATE_STARTING:
      return "starting";
    case cove::v1::MACHINE_STATE_RUNNING:
      return "running";
    case cove::v1::MACHINE_STATE_STOPPING:
      return "stopping";
    case cove::v1::MACHINE_STATE_ERROR:
      return "error";
    default:
      return "unknown";
  }
}

const char* AccelName(cove::v1::Accel accel) {
  switch (accel) {
    case cove::v1::ACCEL_AUTO:
      return "auto";
    case cove::v1::ACCEL_KVM:
      return "kvm";
    case cove::v1::ACCEL_HVF:
      return "hvf";
    case cove::v1::ACCEL_TCG:
      return "tcg";
    default:
      return "";
  }
}

}  // namespace cove
