#include <cstdio>

#include "client/cmd_lifecycle.h"
#include "client/commands.h"
#include "client/spec_flags.h"

namespace cove::client {
namespace {

std::string PhaseName(cove::v1::StopPhase phase) {
  switch (phase) {
    case cove::v1::STOP_PHASE_AGENT_SHUTDOWN:
      return "guest shutdown";
    case cove::v1::STOP_PHASE_ACPI_POWERDOWN:
      return "acpi powerdown";
    case cove::v1::STOP_PHASE_QUIT:
      return "quit";
    case cove::v1::STOP_PHASE_KILL:
      return "kill";
    case cove::v1::STOP_PHASE_STOPPED:
      return "stopped";
    default:
      return "working";
  }
}

}  // namespace

int RunStop(Context& ctx, const std::string& name, bool force, unsigned timeout_s) {
  cove::v1::StopMachineRequest req;
  req.set_name(name);
  req.set_force(force);
  req.set_timeout_seconds(timeout_s);
  grpc::ClientContext call;
  auto reader = ctx.machines().Stop(&call, req);
  cove::v1::StopMachineResponse resp;
  while (reader->Read(&resp)) {
    if (!resp.has_machine())
      PrintProgress(name, PhaseName(resp.phase()), resp.message(), resp.elapsed_ms());
  }
  grpc::Status st = reader->Finish();
  return st.ok() ? 0 : Context::Fail(st);
}

void RegisterStop(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("stop", "Shut a machine down (guest poweroff, then harder)");
  auto name = std::make_shared<std::string>("default");
  auto force = std::make_shared<bool>(false);
  auto timeout = std::make_shared<unsigned>(0);
  cmd->add_option("name", *name, "Machine name (default: default)");
  cmd->add_flag("-f,--force", *force, "Kill the machine at once");
  cmd->add_option("--timeout", *timeout,
                  "Seconds for a clean shutdown before forcing (default 20)");
  cmd->callback([&ctx, &exit_code, name, force, timeout]() {
    exit_code = RunStop(ctx, *name, *force, *timeout);
  });
}

}  // namespace cove::client
