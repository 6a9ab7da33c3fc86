// `cove daemon install|uninstall|status|start|stop` (client/service_manager.h).
#include <iostream>

#include "client/commands.h"
#include "client/service_manager.h"
#include "nlohmann/json.hpp"

namespace cove::client {

void RegisterDaemon(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("daemon", "Run coved as a login service (systemd, launchd)")
                  ->require_subcommand(1);
  auto manager = [&ctx]() { return ServiceManager(ctx.layout(), SelfDir() + "/coved"); };
  auto report = [&exit_code](const absl::StatusOr<std::string>& r) {
    if (!r.ok()) {
      exit_code = Context::Fail(r.status());
      return;
    }
    std::cout << *r;
  };

  cmd->add_subcommand("install", "Start coved at login (and on first use, socket-activated)")
      ->callback([manager, report]() { report(manager().Install()); });
  cmd->add_subcommand("uninstall", "Stop starting coved at login; remove its unit files")
      ->callback([manager, report]() { report(manager().Uninstall()); });

  auto* status = cmd->add_subcommand("status", "Is coved installed, enabled and running?");
  status->add_flag("--json", ctx.json, "Print JSON");
  status->callback([&ctx, manager]() {
    const ServiceStatus s = manager().Status();
    if (ctx.json) {
      std::cout << nlohmann::json{{"unit_files", s.unit_files},
                                  {"installed", s.installed},
                                  {"manager_available", s.manager_available},
                                  {"manager", s.manager_note},
                                  {"enabled", s.enabled},
                                  {"active", s.active},
                                  {"coved_pid", s.coved_pid}}
                       .dump(2)
                << "\n";
      return;
    }
    std::cout << "unit files:      " << (s.installed ? "installed" : "not installed") << " (";
    for (size_t i = 0; i < s.unit_files.size(); ++i) {
      std::cout << (i ? ", " : "") << s.unit_files[i];
    }
    std::cout << ")\n";
    std::cout << "service manager: " << (s.manager_available ? s.manager_note : "none: ")
              << (s.manager_available ? "" : s.manager_note) << "\n";
    if (s.manager_available && s.installed) {
      std::cout << "at login:        " << (s.enabled ? "enabled" : "disabled") << "\n";
      std::cout << "managed:         " << (s.active ? "active" : "inactive") << "\n";
    }
    if (s.coved_pid != 0) {
      std::cout << "coved:           running (pid " << s.coved_pid << ")\n";
    } else {
      std::cout << "coved:           not running"
                << (s.active ? " (the socket is held; the next cove command starts it)" : "")
                << "\n";
    }
  });

  cmd->add_subcommand("start", "Start coved (through the service manager when installed there)")
      ->callback([&ctx, &exit_code, manager, report]() {
        const ServiceStatus s = manager().Status();
        if (s.manager_available && s.installed) return report(manager().Start());
        if (auto st = ctx.EnsureDaemon(/*explicit_start=*/true); !st.ok()) {
          exit_code = Context::Fail(st);
          return;
        }
        std::cout << "coved is running (pid " << RunningCovedPid(ctx.layout().lock()) << ")\n";
      });
  cmd->add_subcommand("stop", "Stop coved; machines keep running and are re-adopted later")
      ->callback([manager, report]() { report(manager().Stop()); });
}

}  // namespace cove::client
