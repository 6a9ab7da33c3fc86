// What every cove command needs: the cove home, a connection to coved
// (started in the background when it is not running), and how to report
// errors. Every command is one gRPC call on this connection.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/paths.h"
#include "cove/v1/daemon.grpc.pb.h"
#include "cove/v1/images.grpc.pb.h"
#include "cove/v1/machines.grpc.pb.h"

namespace cove::client {

class Context {
 public:
  // Connects (once) and returns the channel; starts coved if needed unless
  // COVE_NO_AUTOSTART=1. Exits the process with a message on failure.
  std::shared_ptr<grpc::Channel> Channel();
  cove::v1::Machines::Stub& machines();
  cove::v1::Images::Stub& images();
  cove::v1::Daemon::Stub& daemon();

  const HomeLayout& layout();
  // Prints "cove: MESSAGE" to stderr and returns the exit code for it.
  static int Fail(const grpc::Status& status);
  static int Fail(const absl::Status& status);

  bool json = false;  // --json given to the command

  // Starts coved unless something answers on the socket. `explicit_start`
  // (cove daemon start) starts it even with COVE_NO_AUTOSTART=1.
  absl::Status EnsureDaemon(bool explicit_start = false);

 private:
  std::unique_ptr<HomeLayout> layout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cove::v1::Machines::Stub> machines_;
  std::unique_ptr<cove::v1::Images::Stub> images_;
  std::unique_ptr<cove::v1::Daemon::Stub> daemon_;
};

// Which exe the CLI runs from, to find coved beside it.
std::string SelfDir();

}  // namespace cove::client
