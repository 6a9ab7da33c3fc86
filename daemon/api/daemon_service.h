// cove.v1.Daemon over gRPC: facts about coved and the host.
#pragma once

#include "cove/v1/daemon.grpc.pb.h"
#include "daemon/api/peer_auth.h"
#include "daemon/loop/event_loop.h"
#include "daemon/machine/accel_resolver.h"
#include "daemon/machine/spec.h"

namespace cove::daemon::api {

class DaemonService final : public cove::v1::Daemon::Service {
 public:
  DaemonService(EventLoop& loop, AccelResolver& accel, const PeerAuth& auth, HostResources host,
                std::string home, std::string socket)
      : loop_(loop),
        accel_(accel),
        auth_(auth),
        host_(std::move(host)),
        home_(std::move(home)),
        socket_(std::move(socket)) {}

  grpc::Status GetInfo(grpc::ServerContext* ctx, const cove::v1::GetInfoRequest* req,
                       cove::v1::DaemonInfo* resp) override;

 private:
  EventLoop& loop_;
  AccelResolver& accel_;
  const PeerAuth& auth_;
  const HostResources host_;
  const std::string home_, socket_;
};

}  // namespace cove::daemon::api
