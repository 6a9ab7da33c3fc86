// Each cove command registers itself on the CLI11 app; one file a command.
#pragma once

#include <CLI/CLI.hpp>

#include "client/context.h"

namespace cove::client {

// Each sets the subcommand's callback; the callback sets `exit_code`.
void RegisterCreate(CLI::App& app, Context& ctx, int& exit_code);
void RegisterStart(CLI::App& app, Context& ctx, int& exit_code);
void RegisterStop(CLI::App& app, Context& ctx, int& exit_code);
void RegisterRestart(CLI::App& app, Context& ctx, int& exit_code);
void RegisterDelete(CLI::App& app, Context& ctx, int& exit_code);
void RegisterList(CLI::App& app, Context& ctx, int& exit_code);
void RegisterInspect(CLI::App& app, Context& ctx, int& exit_code);
void RegisterEvents(CLI::App& app, Context& ctx, int& exit_code);
void RegisterDoctor(CLI::App& app, Context& ctx, int& exit_code);
void RegisterImage(CLI::App& app, Context& ctx, int& exit_code);
void RegisterVersion(CLI::App& app, Context& ctx, int& exit_code);
void RegisterExec(CLI::App& app, Context& ctx, int& exit_code);
void RegisterShell(CLI::App& app, Context& ctx, int& exit_code);
void RegisterLogs(CLI::App& app, Context& ctx, int& exit_code);
void RegisterCopy(CLI::App& app, Context& ctx, int& exit_code);
void RegisterPorts(CLI::App& app, Context& ctx, int& exit_code);
void RegisterForward(CLI::App& app, Context& ctx, int& exit_code);
void RegisterSet(CLI::App& app, Context& ctx, int& exit_code);
void RegisterDaemon(CLI::App& app, Context& ctx, int& exit_code);
// `completion` and the hidden `__complete-machines` it calls.
void RegisterCompletion(CLI::App& app, Context& ctx, int& exit_code);

}  // namespace cove::client
