#include <iostream>

#include "client/commands.h"
#include "client/output.h"

namespace cove::client {

void RegisterList(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("list", "List machines")->alias("ls");
  cmd->add_flag("--json", ctx.json, "JSON array of machines");
  cmd->callback([&ctx, &exit_code]() {
    cove::v1::ListMachinesResponse resp;
    grpc::ClientContext call;
    grpc::Status st = ctx.machines().List(&call, {}, &resp);
    if (!st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    if (ctx.json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& m : resp.machines()) out.push_back(MachineJson(m));
      std::cout << out.dump(2) << "\n";
    } else {
      std::cout << MachineTable(resp);
    }
  });
}

void RegisterInspect(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("inspect", "Show everything about a machine");
  auto name = std::make_shared<std::string>("default");
  cmd->add_option("name", *name, "Machine name (default: default)");
  cmd->add_flag("--json", ctx.json, "JSON (the default output is JSON too, indented)");
  cmd->callback([&ctx, &exit_code, name]() {
    cove::v1::GetMachineRequest req;
    req.set_name(*name);
    cove::v1::Machine m;
    grpc::ClientContext call;
    grpc::Status st = ctx.machines().Get(&call, req, &m);
    if (!st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    std::cout << MachineJson(m).dump(2) << "\n";
  });
}

}  // namespace cove::client
