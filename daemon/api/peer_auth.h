// Who is on the other end of each API connection. coved accepts connections
// on its unix socket itself (UnixListener), reads the peer's uid there
// (SO_PEERCRED on Linux, getpeereid on macOS), and hands the fd to gRPC,
// which names that connection's peer "fd:N". Every RPC then checks the uid
// here, so another user gets PERMISSION_DENIED with a reason instead of a
// dropped connection.
//
// Threading: any thread; internally locked.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <map>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace cove::daemon::api {

class PeerAuth {
 public:
  explicit PeerAuth(uid_t owner) : owner_(owner) {}

  // Records the uid of a connection just accepted on `fd`.
  void Record(int fd, uid_t uid);
  // OK if the RPC's peer is the daemon's own user.
  grpc::Status Check(const grpc::ServerContext* context) const;

 private:
  const uid_t owner_;
  mutable std::mutex mu_;
  std::map<int, uid_t> uid_by_fd_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cove::daemon::api
