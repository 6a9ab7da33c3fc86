#include "daemon/api/peer_auth.h"

#include <cstdlib>
#include <string>

#include "daemon/api/status.h"

namespace cove::daemon::api {

void PeerAuth::Record(int fd, uid_t uid) {
  std::lock_guard<std::mutex> lock(mu_);
  // fds are reused after close; the newest connection on an fd wins.
  uid_by_fd_[fd] = uid;
}

grpc::Status PeerAuth::Check(const grpc::ServerContext* context) const {
  const std::string peer = context->peer();
  const size_t colon = peer.rfind(':');
  if (peer.rfind("fd:", 0) == 0 && colon != std::string::npos) {
    const int fd = std::atoi(peer.c_str() + colon + 1);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = uid_by_fd_.find(fd);
    if (it != uid_by_fd_.end()) {
      if (it->second == owner_) return grpc::Status::OK;
      return Error(cove::v1::NOT_OWNER, grpc::StatusCode::PERMISSION_DENIED,
                   "this coved belongs to uid " + std::to_string(owner_) + "; uid " +
                       std::to_string(it->second) +
                       " may not use it. Run your own: cove uses $COVE_HOME or ~/.cove");
    }
  }
  return Error(cove::v1::NOT_OWNER, grpc::StatusCode::PERMISSION_DENIED,
               "cannot tell who is connecting (peer \"" + peer + "\")");
}

}  // namespace cove::daemon::api
