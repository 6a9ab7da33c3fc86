#include <iostream>

#include "client/commands.h"
#include "client/output.h"
#include "common/version.h"

namespace cove::client {

void RegisterVersion(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd =
      app.add_subcommand("version", "Versions of cove and coved, and the host's accelerators");
  cmd->add_flag("--json", ctx.json, "JSON");
  auto reprobe = std::make_shared<bool>(false);
  cmd->add_flag("--probe", *reprobe,
                "Forget the accelerator verdicts (those of real boots too) and probe again");
  cmd->callback([&ctx, &exit_code, reprobe]() {
    cove::v1::GetInfoRequest req;
    req.set_reprobe_accels(*reprobe);
    cove::v1::DaemonInfo info;
    grpc::ClientContext call;
    grpc::Status st = ctx.daemon().GetInfo(&call, req, &info);
    if (!st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    if (ctx.json) {
      std::cout << nlohmann::json{{"cove", kVersion},
                                  {"coved", info.version()},
                                  {"home", info.home()},
                                  {"host_arch", info.host_arch()},
                                  {"qemu", info.qemu_version()},
                                  {"auto_accel", AccelName(info.auto_accel())},
                                  {"accels", AccelVerdictsJson(info.accels())}}
                       .dump(2)
                << "\n";
      return;
    }
    std::cout << "cove " << kVersion << ", coved " << info.version() << " (pid " << info.pid()
              << ")\nhome " << info.home() << "\nhost " << info.host_os() << " " << info.host_arch()
              << ", " << info.qemu_version() << "\naccel auto = " << AccelName(info.auto_accel())
              << "\n";
    for (const auto& v : info.accels()) {
      const std::string by = v.checked_by() == "boot" ? " (found by a real boot)" : "";
      std::cout << "  " << AccelName(v.accel()) << ": "
                << (v.usable() ? "works" : "unusable: " + v.reason()) << by << "\n";
    }
  });
}

}  // namespace cove::client
