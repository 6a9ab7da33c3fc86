#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "client/cmd_lifecycle.h"
#include "client/commands.h"
#include "client/docker_context.h"
#include "client/output.h"
#include "client/spec_flags.h"
#include "common/errors.h"

namespace cove::client {
namespace {

std::string PhaseName(cove::v1::StartPhase phase) {
  switch (phase) {
    case cove::v1::START_PHASE_CREATING:
      return "creating";
    case cove::v1::START_PHASE_PREPARING_DISK:
      return "preparing disk";
    case cove::v1::START_PHASE_PROBING_ACCEL:
      return "probing accel";
    case cove::v1::START_PHASE_BOOTING:
      return "booting";
    case cove::v1::START_PHASE_WAITING_FOR_AGENT:
      return "waiting for agent";
    case cove::v1::START_PHASE_STARTING_RUNTIME:
      return "starting runtime";
    case cove::v1::START_PHASE_RUNNING:
      return "running";
    case cove::v1::START_PHASE_ACCEL_FALLBACK:
      return "accel fallback";
    default:
      return "working";
  }
}

// Update with the sizes and runtime `req.spec` gives (if any). A machine that
// does not exist yet is not an error when the start creates it from spec.
grpc::Status UpdateBeforeStart(Context& ctx, const cove::v1::StartMachineRequest& req) {
  cove::v1::UpdateMachineRequest update;
  update.set_name(req.name());
  const cove::v1::MachineSpec& spec = req.spec();
  auto* mask = update.mutable_update_mask();
  if (spec.cpus() != 0) mask->add_paths("cpus");
  if (spec.memory_bytes() != 0) mask->add_paths("memory_bytes");
  if (spec.disk_bytes() != 0) mask->add_paths("disk_bytes");
  if (spec.runtime() != cove::v1::RUNTIME_UNSPECIFIED) mask->add_paths("runtime");
  if (mask->paths().empty()) return grpc::Status::OK;
  *update.mutable_spec() = spec;
  grpc::ClientContext call;
  cove::v1::Machine out;
  grpc::Status st = ctx.machines().Update(&call, update, &out);
  if (!st.ok() && req.create_if_missing() &&
      ParseErrorDetails(st.error_details()).reason == cove::v1::MACHINE_NOT_FOUND) {
    return grpc::Status::OK;
  }
  return st;
}

}  // namespace

int RunStart(Context& ctx, const cove::v1::StartMachineRequest& req, bool activate) {
  grpc::ClientContext call;
  auto reader = ctx.machines().Start(&call, req);
  cove::v1::StartMachineResponse resp;
  cove::v1::Machine machine;
  while (reader->Read(&resp)) {
    if (resp.has_machine()) {
      machine = resp.machine();
      continue;
    }
    if (!ctx.json)
      PrintProgress(req.name(), PhaseName(resp.phase()), resp.message(), resp.elapsed_ms());
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Context::Fail(st);
  if (ctx.json) {
    std::cout << MachineJson(machine).dump(2) << "\n";
  } else {
    std::cerr << absl::StrFormat("%s: running (runtime ready %.1fs after qemu started)\n",
                                 machine.name(), machine.guest().start_to_ready_ms() / 1000.0);
    if (!machine.sockets().containerd().empty()) {
      std::cerr << machine.name() << ": containerd socket " << machine.sockets().containerd()
                << "\n";
    }
  }
  EnsureDockerContext(machine, activate);
  return 0;
}

void RegisterStart(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "start", "Start a machine; with no name, start \"default\" (created if missing)");
  auto name = std::make_shared<std::string>();
  auto flags = std::make_shared<SpecFlags>();
  auto timeout = std::make_shared<unsigned>(0);
  auto activate = std::make_shared<bool>(false);
  cmd->add_option("name", *name, "Machine name (default: default)");
  flags->Add(*cmd);
  cmd->add_flag("--activate", *activate,
                "With --runtime docker: make the cove-NAME docker context current");
  cmd->add_option("--timeout", *timeout, "Seconds to wait for the guest (default 180)");
  cmd->add_flag("--json", ctx.json, "Print the machine as JSON when running");
  cmd->callback([&ctx, &exit_code, name, flags, timeout, activate]() {
    auto spec = flags->ToSpec();
    if (!spec.ok()) {
      exit_code = Context::Fail(spec.status());
      return;
    }
    cove::v1::StartMachineRequest req;
    req.set_name(name->empty() ? "default" : *name);
    req.set_create_if_missing(name->empty() || *name == "default");
    *req.mutable_spec() = *spec;
    req.set_timeout_seconds(*timeout);
    // Start only starts: sizes and a runtime given to the start of a machine
    // that exists change it first, as `colima start --memory` does (all or
    // nothing; refused while it runs).
    if (auto st = UpdateBeforeStart(ctx, req); !st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    exit_code = RunStart(ctx, req, *activate);
  });
}

void RegisterRestart(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("restart", "Stop a machine, then start it again");
  auto name = std::make_shared<std::string>("default");
  auto force = std::make_shared<bool>(false);
  cmd->add_option("name", *name, "Machine name (default: default)");
  cmd->add_flag("-f,--force", *force, "Kill instead of a clean shutdown");
  cmd->callback([&ctx, &exit_code, name, force]() {
    exit_code = RunStop(ctx, *name, *force, 0);
    if (exit_code != 0) return;
    cove::v1::StartMachineRequest req;
    req.set_name(*name);
    exit_code = RunStart(ctx, req, false);
  });
}

}  // namespace cove::client
