#include <iostream>

#include "client/commands.h"
#include "client/doctor.h"
#include "client/output.h"

namespace cove::client {

void RegisterDoctor(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "doctor", "Explain slowness and kills: the host, each machine, emulated containers");
  auto name = std::make_shared<std::string>();
  cmd->add_option("name", *name, "Only this machine (and the host)");
  cmd->add_flag("--json", ctx.json, "An array of findings");
  cmd->callback([&ctx, &exit_code, name]() {
    cove::v1::DaemonInfo info;
    {
      grpc::ClientContext call;
      grpc::Status st = ctx.daemon().GetInfo(&call, cove::v1::GetInfoRequest(), &info);
      if (!st.ok()) {
        exit_code = Context::Fail(st);
        return;
      }
    }
    std::vector<cove::v1::Machine> machines;
    if (!name->empty()) {
      // The guest looks again now: a user asks right after seeing something
      // slow, and the agent's routine scans may be 10 s old.
      cove::v1::GetMachineRequest req;
      req.set_name(*name);
      req.set_refresh_guest(true);
      cove::v1::Machine m;
      grpc::ClientContext call;
      grpc::Status st = ctx.machines().Get(&call, req, &m);
      if (!st.ok()) {
        exit_code = Context::Fail(st);
        return;
      }
      machines.push_back(std::move(m));
    } else {
      cove::v1::ListMachinesRequest req;
      req.set_refresh_guest(true);
      cove::v1::ListMachinesResponse resp;
      grpc::ClientContext call;
      grpc::Status st = ctx.machines().List(&call, req, &resp);
      if (!st.ok()) {
        exit_code = Context::Fail(st);
        return;
      }
      machines.assign(resp.machines().begin(), resp.machines().end());
    }
    std::vector<Finding> findings = Diagnose(info, machines);
    bool error = false;
    nlohmann::json array = nlohmann::json::array();
    for (const Finding& f : findings) {
      error = error || f.severity == "error";
      if (ctx.json) {
        array.push_back({{"severity", f.severity},
                         {"subject", f.subject},
                         {"message", f.message},
                         {"fix", f.fix}});
        continue;
      }
      std::cout << "[" << f.severity << "] " << f.subject << ": " << f.message << "\n";
      if (!f.fix.empty()) std::cout << "    fix: " << f.fix << "\n";
    }
    if (ctx.json) std::cout << array.dump(2) << "\n";
    if (error) exit_code = 1;
  });
}

}  // namespace cove::client
