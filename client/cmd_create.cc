#include <iostream>

#include "client/commands.h"
#include "client/docker_context.h"
#include "client/output.h"
#include "client/spec_flags.h"

namespace cove::client {

void RegisterCreate(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("create", "Create a stopped machine");
  auto name = std::make_shared<std::string>();
  auto flags = std::make_shared<SpecFlags>();
  cmd->add_option("name", *name, "Machine name: a-z, 0-9 and '-'")->required();
  flags->Add(*cmd);
  cmd->add_flag("--json", ctx.json, "Print the machine as JSON");
  cmd->callback([&ctx, &exit_code, name, flags]() {
    auto spec = flags->ToSpec();
    if (!spec.ok()) {
      exit_code = Context::Fail(spec.status());
      return;
    }
    cove::v1::CreateMachineRequest req;
    req.set_name(*name);
    *req.mutable_spec() = *spec;
    cove::v1::Machine machine;
    grpc::ClientContext call;
    grpc::Status st = ctx.machines().Create(&call, req, &machine);
    if (!st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    if (ctx.json) {
      std::cout << MachineJson(machine).dump(2) << "\n";
    } else {
      std::cout << "created " << machine.name() << " (" << machine.dir() << ")\n";
    }
  });
}

void RegisterDelete(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("delete", "Delete a machine and its disk");
  auto names = std::make_shared<std::vector<std::string>>();
  auto force = std::make_shared<bool>(false);
  cmd->add_option("names", *names, "Machine names")->required();
  cmd->add_flag("-f,--force", *force, "Kill a running machine first");
  cmd->callback([&ctx, &exit_code, names, force]() {
    for (const auto& name : *names) {
      cove::v1::DeleteMachineRequest req;
      req.set_name(name);
      req.set_force(*force);
      cove::v1::DeleteMachineResponse resp;
      grpc::ClientContext call;
      grpc::Status st = ctx.machines().Delete(&call, req, &resp);
      if (!st.ok()) {
        exit_code = Context::Fail(st);
        return;
      }
      std::cout << "deleted " << name << "\n";
      RemoveDockerContext(name);
    }
  });
}

}  // namespace cove::client
