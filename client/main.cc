// cove: the command line for coved. Every command is one gRPC call.
#include <CLI/CLI.hpp>
#include <csignal>

#include "client/commands.h"
#include "common/version.h"

int main(int argc, char** argv) {
  CLI::App app{"cove: Linux machines for containers, run by the coved daemon"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(cove::kVersion));
  cove::client::Context ctx;
  int exit_code = 0;
  using namespace cove::client;
  RegisterCreate(app, ctx, exit_code);
  RegisterStart(app, ctx, exit_code);
  RegisterStop(app, ctx, exit_code);
  RegisterRestart(app, ctx, exit_code);
  RegisterDelete(app, ctx, exit_code);
  RegisterList(app, ctx, exit_code);
  RegisterInspect(app, ctx, exit_code);
  RegisterEvents(app, ctx, exit_code);
  RegisterDoctor(app, ctx, exit_code);
  RegisterImage(app, ctx, exit_code);
  RegisterVersion(app, ctx, exit_code);
  RegisterExec(app, ctx, exit_code);
  RegisterShell(app, ctx, exit_code);
  RegisterLogs(app, ctx, exit_code);
  RegisterCopy(app, ctx, exit_code);
  RegisterPorts(app, ctx, exit_code);
  RegisterForward(app, ctx, exit_code);
  RegisterSet(app, ctx, exit_code);
  RegisterDaemon(app, ctx, exit_code);
  RegisterCompletion(app, ctx, exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
