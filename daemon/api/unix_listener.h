// Accepts connections on coved.sock and passes them to the gRPC server
// after recording the peer's uid (see PeerAuth). The socket is created with
// mode 0600 inside the 0700 cove home. A thread of its own: accept() must
// not wait on the event loop, and gRPC owns each connection once handed
// over.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/api/peer_auth.h"

namespace cove::daemon::api {

class UnixListener {
 public:
  UnixListener(std::string path, PeerAuth& auth) : path_(std::move(path)), auth_(auth) {}
  ~UnixListener();

  // Takes the listening socket systemd (sd_listen_fds, a coved.socket unit)
  // or launchd (the "Listeners" socket of the LaunchAgent) made for coved.
  // False when coved was not socket-activated; an error when it was, but the
  // socket is not a listening unix socket at this path.
  absl::StatusOr<bool> TakeActivated();
  // Binds and listens (replacing a stale socket file).
  absl::Status Listen();
  // Starts handing connections to `server`.
  void Serve(grpc::Server* server);
  // Stops accepting and removes the socket file.
  void Stop();

 private:
  void AcceptLoop(grpc::Server* server);

  const std::string path_;
  PeerAuth& auth_;
  int fd_ = -1;
  // The socket belongs to systemd or launchd: never unlink it.
  bool activated_ = false;
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace cove::daemon::api
