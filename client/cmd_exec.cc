// cove exec, cove shell, cove logs: commands that stream to and from a guest.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "client/commands.h"
#include "client/exec_client.h"

namespace cove::client {

void RegisterExec(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd =
      app.add_subcommand("exec", "Run a command in a running machine: cove exec NAME -- CMD...");
  auto opts = std::make_shared<ExecOptions>();
  auto force_tty = std::make_shared<bool>(false);
  auto no_tty = std::make_shared<bool>(false);
  auto no_stdin = std::make_shared<bool>(false);
  cmd->add_option("name", opts->machine, "Machine name")->required();
  cmd->add_option("command", opts->argv, "The command and its arguments (after --)")->required();
  cmd->add_option("-e,--env", opts->env, "KEY=VALUE for the command's environment (repeatable)");
  cmd->add_option("-w,--workdir", opts->workdir, "Working directory in the guest (default /)");
  cmd->add_flag("-t,--tty", *force_tty, "Run on a terminal (default: when stdin and stdout are)");
  cmd->add_flag("-T,--no-tty", *no_tty, "Never allocate a terminal");
  cmd->add_flag("-n,--no-stdin", *no_stdin, "Do not pass stdin (the command reads EOF)");
  cmd->callback([&ctx, &exit_code, opts, force_tty, no_tty, no_stdin]() {
    ExecOptions o = *opts;
    const bool terminal = isatty(0) && isatty(1);
    o.tty = !*no_tty && (*force_tty || terminal);
    if (o.tty && !isatty(0)) {
      std::cerr << "cove: --tty needs stdin to be a terminal\n";
      exit_code = 2;
      return;
    }
    if (*no_stdin) o.in_fd = -1;
    exit_code = RunExec(ctx, o);
  });
}

void RegisterShell(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("shell", "Open a login shell in a running machine");
  auto machine = std::make_shared<std::string>("default");
  auto workdir = std::make_shared<std::string>();
  cmd->add_option("name", *machine, "Machine name (default: default)");
  cmd->add_option("-w,--workdir", *workdir, "Directory to start in (default /root)");
  cmd->callback([&ctx, &exit_code, machine, workdir]() {
    ExecOptions o;
    o.machine = *machine;
    o.argv = {"/bin/sh", "-l"};
    o.workdir = workdir->empty() ? "/root" : *workdir;
    o.tty = isatty(0);
    if (!o.tty) {
      // Scripts may pipe commands into a shell; they get one without a pty.
      o.argv = {"/bin/sh"};
    }
    exit_code = RunExec(ctx, o);
  });
}

void RegisterLogs(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("logs", "Show a machine's console or a guest service's log");
  auto name = std::make_shared<std::string>();
  auto service = std::make_shared<std::string>("console");
  auto follow = std::make_shared<bool>(false);
  auto lines = std::make_shared<unsigned>(0);
  cmd->add_option("name", *name, "Machine name")->required();
  cmd->add_option("--service", *service, "console (default), containerd or dockerd");
  cmd->add_flag("-f,--follow", *follow, "Keep printing new output");
  cmd->add_option("-n,--tail", *lines, "Lines of history to show first (default 200)");
  cmd->callback([&ctx, &exit_code, name, service, follow, lines]() {
    cove::v1::LogsRequest req;
    req.set_name(*name);
    if (*service == "console") {
      req.set_source(cove::v1::LOG_SOURCE_CONSOLE);
    } else if (*service == "containerd") {
      req.set_source(cove::v1::LOG_SOURCE_CONTAINERD);
    } else if (*service == "dockerd") {
      req.set_source(cove::v1::LOG_SOURCE_DOCKERD);
    } else {
      exit_code = Context::Fail(absl::InvalidArgumentError(
          "unknown service '" + *service + "'; choose console, containerd or dockerd"));
      return;
    }
    req.set_follow(*follow);
    req.set_tail_lines(*lines);
    grpc::ClientContext call;
    auto reader = ctx.machines().Logs(&call, req);
    cove::v1::LogsResponse resp;
    while (reader->Read(&resp)) {
      std::cout.write(resp.data().data(), static_cast<std::streamsize>(resp.data().size()));
      std::cout.flush();
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) exit_code = Context::Fail(st);
  });
}

}  // namespace cove::client
