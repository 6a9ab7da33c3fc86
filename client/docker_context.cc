#include "client/docker_context.h"

#include <chrono>
#include <cstdio>

#include "common/subprocess.h"

namespace cove::client {
namespace {

constexpr std::chrono::seconds kDockerTimeout(20);

// Runs the docker CLI; empty optional-like result when docker is absent.
bool RunDocker(const std::vector<std::string>& args, CommandResult* result) {
  if (!FindInPath("docker").ok()) return false;
  std::vector<std::string> argv = {"docker"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv, kDockerTimeout);
  if (!r.ok()) {
    result->exit_code = -1;
    result->output = std::string(r.status().message());
    return true;
  }
  *result = *r;
  return true;
}

}  // namespace

std::string DockerContextName(const std::string& machine) { return "cove-" + machine; }

void EnsureDockerContext(const cove::v1::Machine& machine, bool activate) {
  const std::string& sock = machine.sockets().docker();
  if (sock.empty()) return;
  const std::string ctx = DockerContextName(machine.name());
  const std::string endpoint = "host=unix://" + sock;
  CommandResult r;
  if (!RunDocker({"context", "inspect", ctx}, &r)) {
    if (activate) {
      std::fprintf(stderr, "%s: no docker CLI on this host; use DOCKER_HOST=unix://%s\n",
                   machine.name().c_str(), sock.c_str());
    }
    return;
  }
  if (r.ok()) {
    RunDocker({"context", "update", ctx, "--docker", endpoint}, &r);
  } else {
    RunDocker({"context", "create", ctx, "--description", "cove machine " + machine.name(),
               "--docker", endpoint},
              &r);
  }
  if (!r.ok()) {
    std::fprintf(stderr, "%s: could not set up docker context %s: %s\n", machine.name().c_str(),
                 ctx.c_str(), r.output.c_str());
    return;
  }
  if (activate) {
    RunDocker({"context", "use", ctx}, &r);
    if (r.ok()) {
      std::fprintf(stderr, "%s: docker context %s is now current\n", machine.name().c_str(),
                   ctx.c_str());
    } else {
      std::fprintf(stderr, "%s: docker context use %s failed: %s\n", machine.name().c_str(),
                   ctx.c_str(), r.output.c_str());
    }
  } else {
    std::fprintf(stderr,
                 "%s: docker context %s ready (docker --context %s, or cove start --activate)\n",
                 machine.name().c_str(), ctx.c_str(), ctx.c_str());
  }
}

void RemoveDockerContext(const std::string& machine) {
  CommandResult r;
  const std::string ctx = DockerContextName(machine);
  if (!RunDocker({"context", "inspect", ctx}, &r) || !r.ok()) return;
  // A current context cannot be removed without --force; it falls back to
  // the default context then.
  RunDocker({"context", "rm", "--force", ctx}, &r);
  if (r.ok()) std::fprintf(stderr, "%s: removed docker context %s\n", machine.c_str(), ctx.c_str());
}

}  // namespace cove::client
