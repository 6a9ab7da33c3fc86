#include "common/api_names.h"

#include <cctype>

namespace cove {

std::string EnumWordOf(const google::protobuf::EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* v = type->FindValueByNumber(value);
  if (v == nullptr || value == 0) return "";
  // The prefix is the enum's name in UPPER_SNAKE (ServiceState: SERVICE_STATE_).
  std::string prefix;
  for (char c : type->name()) {
    if (std::isupper(static_cast<unsigned char>(c)) && !prefix.empty()) prefix += '_';
    prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  prefix += '_';
  std::string word = v->name();
  if (word.rfind(prefix, 0) == 0) word = word.substr(prefix.size());
  for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return word;
}

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

const char* ForwardStateName(cove::v1::ForwardState state) {
  switch (state) {
    case cove::v1::FORWARD_STATE_PENDING:
      return "pending";
    case cove::v1::FORWARD_STATE_LISTENING:
      return "listening";
    case cove::v1::FORWARD_STATE_CONFLICT:
      return "conflict";
    case cove::v1::FORWARD_STATE_FAILED:
      return "failed";
    case cove::v1::FORWARD_STATE_CLOSING:
      return "closing";
    case cove::v1::FORWARD_STATE_CLOSED:
      return "closed";
    default:
      return "unknown";
  }
}

const char* ProtoName(cove::v1::Proto proto) {
  switch (proto) {
    case cove::v1::PROTO_TCP:
      return "tcp";
    case cove::v1::PROTO_UDP:
      return "udp";
    default:
      return "any";
  }
}

std::string Endpoint(const std::string& ip, uint32_t port) {
  const bool v6 = ip.find(':') != std::string::npos;
  return (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

}  // namespace cove
