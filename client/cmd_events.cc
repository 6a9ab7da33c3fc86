#include <iostream>

#include "client/commands.h"
#include "client/output.h"

namespace cove::client {

void RegisterEvents(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("events", "Follow machine events until interrupted");
  auto name = std::make_shared<std::string>();
  auto snapshot = std::make_shared<bool>(false);
  cmd->add_option("name", *name, "Only this machine");
  cmd->add_flag("--json", ctx.json, "One JSON object per line");
  cmd->add_flag("--snapshot", *snapshot, "First print the current state of each machine");
  cmd->callback([&ctx, &exit_code, name, snapshot]() {
    cove::v1::WatchRequest req;
    req.set_name(*name);
    req.set_initial_snapshot(*snapshot);
    grpc::ClientContext call;
    auto reader = ctx.machines().Watch(&call, req);
    cove::v1::Event e;
    while (reader->Read(&e)) {
      nlohmann::json j = EventJson(e);
      if (ctx.json) {
        std::cout << j.dump() << std::endl;
      } else if (e.has_oom_kill()) {
        // Two lines a person reads: what happened, and what to do.
        std::cout << j.value("time", "") << "  " << e.machine_name() << "  oom-kill  "
                  << e.oom_kill().summary() << "\n    fix: " << e.oom_kill().fix() << std::endl;
      } else {
        std::cout << j.value("time", "") << "  " << e.machine_name() << "  "
                  << EventKindName(e.kind()) << "  " << j.value("state", "") << "  " << e.message()
                  << std::endl;
      }
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) exit_code = Context::Fail(st);
  });
}

}  // namespace cove::client
