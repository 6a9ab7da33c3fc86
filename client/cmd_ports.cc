// cove ports, cove forward add|rm, cove set: a machine's port forwards.
#include <iostream>
#include <optional>
#include <tuple>

#include "client/commands.h"
#include "client/output.h"
#include "client/port_flags.h"
#include "client/spec_flags.h"
#include "common/sizes.h"

namespace cove::client {
namespace {

// Prints the machine's forwards after a change: what the user now has.
void PrintForwards(Context& ctx, const cove::v1::Machine& m) {
  if (ctx.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& f : m.forwards()) list.push_back(ForwardJson(f));
    std::cout << list.dump() << "\n";
    return;
  }
  if (m.state() != cove::v1::MACHINE_STATE_RUNNING) {
    std::cout << m.name() << " is " << StateName(m.state()) << "; its forwards open when it runs\n";
    return;
  }
  std::cout << ForwardTable(m);
}

}  // namespace

void RegisterPorts(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("ports", "List a machine's port forwards and their states");
  auto name = std::make_shared<std::string>("default");
  cmd->add_option("name", *name, "Machine name (default: default)");
  cmd->add_flag("--json", ctx.json, "A JSON array");
  cmd->callback([&ctx, &exit_code, name]() {
    cove::v1::GetMachineRequest req;
    req.set_name(*name);
    cove::v1::Machine m;
    grpc::ClientContext call;
    if (grpc::Status st = ctx.machines().Get(&call, req, &m); !st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    PrintForwards(ctx, m);
  });
}

void RegisterForward(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand("forward", "Add or remove static port forwards");
  cmd->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  auto spec = std::make_shared<std::string>();

  auto* add =
      cmd->add_subcommand("add", "Forward a host port to a guest port whenever the machine runs");
  add->add_option("name", *name, "Machine name")->required();
  add->add_option("forward", *spec, "[HOSTIP:]HOSTPORT:GUESTPORT[/udp], e.g. 8080:80")->required();
  add->add_flag("--json", ctx.json, "Print the forwards as JSON");
  add->callback([&ctx, &exit_code, name, spec]() {
    auto f = ParseForwardSpec(*spec);
    if (!f.ok()) {
      exit_code = Context::Fail(f.status());
      return;
    }
    cove::v1::AddForwardRequest req;
    req.set_name(*name);
    *req.mutable_forward() = *f;
    cove::v1::Machine m;
    grpc::ClientContext call;
    if (grpc::Status st = ctx.machines().AddForward(&call, req, &m); !st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    PrintForwards(ctx, m);
  });

  auto* rm = cmd->add_subcommand("rm", "Remove a static forward");
  rm->alias("remove");
  rm->add_option("name", *name, "Machine name")->required();
  rm->add_option("forward", *spec, "[HOSTIP:]HOSTPORT[/udp], as `cove ports` lists it")->required();
  rm->add_flag("--json", ctx.json, "Print the forwards as JSON");
  rm->callback([&ctx, &exit_code, name, spec]() {
    auto f = ParseForwardHostEnd(*spec);
    if (!f.ok()) {
      exit_code = Context::Fail(f.status());
      return;
    }
    cove::v1::RemoveForwardRequest req;
    req.set_name(*name);
    *req.mutable_forward() = *f;
    cove::v1::Machine m;
    grpc::ClientContext call;
    if (grpc::Status st = ctx.machines().RemoveForward(&call, req, &m); !st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    PrintForwards(ctx, m);
  });
}

void RegisterSet(CLI::App& app, Context& ctx, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "set", "Change a machine's settings: port rules, restart, autostart, accelerator");
  struct Flags {
    std::string name, restart, accel, mount_type, memory, disk;
    unsigned cpus = 0;
    CLI::Option* cpus_option = nullptr;
    std::vector<std::string> mounts;
    std::vector<std::string> rules;
    bool clear = false;
    std::optional<bool> autostart;
    std::optional<bool> foreign_binaries;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("name", f->name, "Machine name")->required();
  cmd->add_option("--port-rule", f->rules,
                  "Port rule, repeatable, replacing all rules (see `cove create --help`)");
  cmd->add_flag("--clear-port-rules", f->clear, "Remove every port rule");
  cmd->add_option("--restart", f->restart, "never or on-failure[:N] (see `cove create --help`)");
  cmd->add_flag_function(
      "--autostart,!--no-autostart", [f](std::int64_t n) { f->autostart = n > 0; },
      "Start (or not) when coved starts at login");
  cmd->add_option("--accel", f->accel, "auto, kvm, hvf or tcg; applies at the next start");
  cmd->add_flag_function(
      "--foreign-binaries,!--no-foreign-binaries",
      [f](std::int64_t n) { f->foreign_binaries = n > 0; },
      "Run (or not) other architectures' binaries through qemu-user, from the next start");
  cmd->add_option("--mount", f->mounts,
                  "Replace the mounts of a stopped machine: HOST[:GUEST][:ro], repeatable, or "
                  "none (see `cove create --help`)");
  cmd->add_option("--mount-type", f->mount_type, "auto, virtiofs or 9p, for the --mount flags");
  f->cpus_option = cmd->add_option("--cpus", f->cpus, "Virtual CPUs, from the next start");
  cmd->add_option("--memory", f->memory, "Memory, e.g. 4GiB, from the next start");
  cmd->add_option("--disk", f->disk, "Grow the disk, e.g. 40GiB (never shrinks)");
  cmd->callback([&ctx, &exit_code, f]() {
    if (f->rules.empty() && !f->clear && f->restart.empty() && !f->autostart && f->accel.empty() &&
        f->mounts.empty() && f->cpus_option->count() == 0 && f->memory.empty() && f->disk.empty() &&
        !f->foreign_binaries) {
      exit_code = Context::Fail(absl::InvalidArgumentError(
          "nothing to set: give --port-rule RULE (repeatable), --clear-port-rules, "
          "--restart POLICY, --[no-]autostart, --accel ACCEL, --mount MOUNT, --cpus N, "
          "--memory SIZE, --disk SIZE or --[no-]foreign-binaries"));
      return;
    }
    if (!f->mount_type.empty() && f->mounts.empty()) {
      exit_code = Context::Fail(
          absl::InvalidArgumentError("--mount-type goes with --mount: give the mounts it is for"));
      return;
    }
    if (!f->rules.empty() && f->clear) {
      exit_code = Context::Fail(absl::InvalidArgumentError(
          "--port-rule and --clear-port-rules contradict each other; give one"));
      return;
    }
    cove::v1::UpdateMachineRequest req;
    req.set_name(f->name);
    cove::v1::MachineSpec& want = *req.mutable_spec();
    auto* mask = req.mutable_update_mask();
    if (!f->rules.empty() || f->clear) mask->add_paths("port_rules");
    for (const std::string& r : f->rules) {
      auto rule = ParsePortRule(r);
      if (!rule.ok()) {
        exit_code = Context::Fail(rule.status());
        return;
      }
      *want.add_port_rules() = *rule;
    }
    if (!f->restart.empty()) {
      auto policy = ParseRestartPolicy(f->restart);
      if (!policy.ok()) {
        exit_code = Context::Fail(policy.status());
        return;
      }
      mask->add_paths("restart");
      mask->add_paths("max_restarts");
      want.set_restart(policy->first);
      want.set_max_restarts(policy->second);
    }
    if (f->autostart) {
      mask->add_paths("autostart");
      want.set_autostart(*f->autostart);
    }
    if (f->foreign_binaries) {
      mask->add_paths("foreign_binaries");
      want.set_foreign_binaries(*f->foreign_binaries);
    }
    if (f->cpus_option->count() > 0) {
      if (f->cpus == 0) {
        exit_code =
            Context::Fail(absl::InvalidArgumentError("--cpus 0: a machine needs at least 1 CPU"));
        return;
      }
      mask->add_paths("cpus");
      want.set_cpus(f->cpus);
    }
    for (auto [flag, text, field] : {std::tuple{"--memory", &f->memory, "memory_bytes"},
                                     std::tuple{"--disk", &f->disk, "disk_bytes"}}) {
      if (text->empty()) continue;
      auto size = ParseSize(*text, flag);
      if (!size.ok()) {
        exit_code = Context::Fail(size.status());
        return;
      }
      mask->add_paths(field);
      if (std::string(field) == "memory_bytes") {
        want.set_memory_bytes(*size);
      } else {
        want.set_disk_bytes(*size);
      }
    }
    if (!f->mounts.empty()) {
      bool none = false;
      if (auto st = ParseMounts(f->mounts, f->mount_type, want.mutable_mounts(), &none); !st.ok()) {
        exit_code = Context::Fail(st);
        return;
      }
      want.set_no_mounts(none);
      mask->add_paths("mounts");
      mask->add_paths("no_mounts");
    }
    if (!f->accel.empty()) {
      auto accel = ParseAccel(f->accel);
      if (!accel.ok()) {
        exit_code = Context::Fail(accel.status());
        return;
      }
      mask->add_paths("accel");
      want.set_accel(*accel);
    }
    cove::v1::Machine m;
    grpc::ClientContext call;
    if (grpc::Status st = ctx.machines().Update(&call, req, &m); !st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    const auto& spec = m.spec();
    std::cout << m.name() << ": " << spec.cpus() << " CPUs, " << FormatSize(spec.memory_bytes())
              << " memory, " << FormatSize(spec.disk_bytes()) << " disk, " << spec.port_rules_size()
              << " port rule" << (spec.port_rules_size() == 1 ? "" : "s") << ", restart "
              << (spec.restart() == cove::v1::RESTART_POLICY_ON_FAILURE
                      ? "on-failure:" + std::to_string(spec.max_restarts())
                      : std::string("never"))
              << ", autostart " << (spec.autostart() ? "on" : "off") << ", " << spec.mounts_size()
              << " mount" << (spec.mounts_size() == 1 ? "" : "s") << ", accel "
              << AccelName(spec.accel())
              << (!f->accel.empty() && m.state() != cove::v1::MACHINE_STATE_STOPPED &&
                          m.state() != cove::v1::MACHINE_STATE_ERROR
                      ? " (from the next start)"
                      : "")
              << "\n";
  });
}

}  // namespace cove::client
