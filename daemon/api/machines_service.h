// cove.v1.Machines over gRPC. Translates only: checks the caller, hands the
// work to the loop thread (MachineManager), streams what comes back, maps
// errors in one place (status.h). Handlers block their own gRPC thread,
// never the loop.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "cove/v1/machines.grpc.pb.h"
#include "daemon/api/peer_auth.h"
#include "daemon/image/image_store.h"
#include "daemon/loop/event_loop.h"
#include "daemon/machine/event_bus.h"
#include "daemon/machine/machine_manager.h"
#include "daemon/machine/spec.h"

namespace cove::daemon::api {

class MachinesService final : public cove::v1::Machines::Service {
 public:
  MachinesService(EventLoop& loop, MachineManager& manager, ImageStore& images, EventBus& events,
                  const PeerAuth& auth, HostResources host)
      : loop_(loop),
        manager_(manager),
        images_(images),
        events_(events),
        auth_(auth),
        host_(std::move(host)) {}

  grpc::Status Create(grpc::ServerContext* ctx, const cove::v1::CreateMachineRequest* req,
                      cove::v1::Machine* resp) override;
  grpc::Status Start(grpc::ServerContext* ctx, const cove::v1::StartMachineRequest* req,
                     grpc::ServerWriter<cove::v1::StartMachineResponse>* writer) override;
  grpc::Status Stop(grpc::ServerContext* ctx, const cove::v1::StopMachineRequest* req,
                    grpc::ServerWriter<cove::v1::StopMachineResponse>* writer) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const cove::v1::DeleteMachineRequest* req,
                      cove::v1::DeleteMachineResponse* resp) override;
  grpc::Status List(grpc::ServerContext* ctx, const cove::v1::ListMachinesRequest* req,
                    cove::v1::ListMachinesResponse* resp) override;
  grpc::Status Update(grpc::ServerContext* ctx, const cove::v1::UpdateMachineRequest* req,
                      cove::v1::Machine* resp) override;
  grpc::Status AddForward(grpc::ServerContext* ctx, const cove::v1::AddForwardRequest* req,
                          cove::v1::Machine* resp) override;
  grpc::Status RemoveForward(grpc::ServerContext* ctx, const cove::v1::RemoveForwardRequest* req,
                             cove::v1::Machine* resp) override;
  grpc::Status Get(grpc::ServerContext* ctx, const cove::v1::GetMachineRequest* req,
                   cove::v1::Machine* resp) override;
  grpc::Status Watch(grpc::ServerContext* ctx, const cove::v1::WatchRequest* req,
                     grpc::ServerWriter<cove::v1::Event>* writer) override;
  // Exec and Logs live in machines_exec.cc.
  grpc::Status Exec(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<cove::v1::ExecResponse, cove::v1::ExecRequest>* stream) override;
  grpc::Status Logs(grpc::ServerContext* ctx, const cove::v1::LogsRequest* req,
                    grpc::ServerWriter<cove::v1::LogsResponse>* writer) override;

 private:
  // Runs `change` on the loop against machine `name`, then answers with the
  // machine.
  grpc::Status ChangeMachine(grpc::ServerContext* ctx, const std::string& name,
                             std::function<absl::Status(Machine&)> change, cove::v1::Machine* resp);
  // Asks the guest agents of machine `name` (all when empty) for fresh facts
  // and waits for them, Machine::kRefreshBoundMs at most.
  void RefreshGuests(const std::string& name);
  // Validates, verifies the image (off the loop: it hashes files), creates.
  absl::StatusOr<cove::v1::Machine> DoCreate(const std::string& name,
                                             const cove::v1::MachineSpec& spec);

  // Starts `start` in its machine, with output to a new channel.
  struct StartedExec {
    std::shared_ptr<ExecSession> session;
    std::shared_ptr<ExecSession::Output> output;
  };
  absl::StatusOr<StartedExec> BeginExec(const cove::v1::ExecStart& start);
  // Streams `started`'s output to `write` until the exit (returned) or until
  // the client goes away (nullopt; the command is killed).
  std::optional<cove::v1::ExecExit> PumpExec(
      grpc::ServerContext* ctx, const StartedExec& started,
      const std::function<bool(const cove::v1::ExecResponse&)>& write);
  grpc::Status ConsoleLogs(grpc::ServerContext* ctx, const cove::v1::LogsRequest& req,
                           grpc::ServerWriter<cove::v1::LogsResponse>* writer);

  EventLoop& loop_;
  MachineManager& manager_;
  ImageStore& images_;
  EventBus& events_;
  const PeerAuth& auth_;
  const HostResources host_;
};

}  // namespace cove::daemon::api
