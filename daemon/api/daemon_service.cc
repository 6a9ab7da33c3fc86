#include "daemon/api/daemon_service.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include "common/version.h"
#include "daemon/api/status.h"
#include "daemon/loop/channel.h"

namespace cove::daemon::api {
namespace {

// DaemonInfo.features: what a client may use, each explained in docs/api.md.
// Add a name when a feature lands; never rename or reuse one.
constexpr const char* kApiFeatures[] = {
    "error-reasons",     // every error has a google.rpc.ErrorInfo (errors.proto)
    "refresh-guest",     // List/Get refresh_guest: the guest looks again first
    "guest-network",     // Machine.guest.network
    "guest-telemetry",   // Machine.guest: memory, PSI, disk, clock
    "oom-kills",         // Machine.oom_kills, EVENT_KIND_OOM_KILL
    "exec",              // Machines.Exec with a tty, stdin, env, workdir
    "logs",              // Machines.Logs: console, containerd, dockerd
    "port-forwarding",   // automatic forwards, port rules, static forwards
    "reverse-sockets",   // host sockets inside the guest
    "mounts",            // host directories (virtiofs, 9p) with host events
    "runtime-docker",    // RUNTIME_DOCKER besides containerd
    "foreign-arch",      // whole-machine emulation (--arch) and binfmt
    "resize",            // cpus, memory, disk while stopped (Update)
    "restart-policy",    // RESTART_POLICY_ON_FAILURE, autostart
    "image-import-url",  // Images.Import of an http(s) URL with a digest
    "events",            // Machines.Watch with a snapshot
};

}  // namespace

grpc::Status DaemonService::GetInfo(grpc::ServerContext* ctx, const cove::v1::GetInfoRequest* req,
                                    cove::v1::DaemonInfo* resp) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  resp->set_version(kVersion);
  resp->set_home(home_);
  if (struct statvfs st{}; statvfs(home_.c_str(), &st) == 0) {
    resp->set_home_total_bytes(static_cast<uint64_t>(st.f_blocks) * st.f_frsize);
    resp->set_home_free_bytes(static_cast<uint64_t>(st.f_bavail) * st.f_frsize);
  }
  resp->set_socket(socket_);
  resp->set_host_arch(host_.arch);
  resp->set_host_os(host_.macos ? "darwin" : "linux");
  resp->set_host_cpus(host_.cpus);
  resp->set_host_memory_bytes(host_.memory_bytes);
  resp->set_pid(::getpid());
  for (const char* feature : kApiFeatures) resp->add_features(feature);
  // Waits for the accelerator probe if it is still running (seconds at most).
  auto done = std::make_shared<Channel<absl::StatusOr<AccelReport>>>(1);
  loop_.Post([this, done, reprobe = req->reprobe_accels()]() {
    auto reply = [done](absl::StatusOr<AccelReport> r) { done->Push(std::move(r), true); };
    if (reprobe) {
      accel_.Reprobe(host_.arch, reply);
    } else {
      accel_.Resolve(host_.arch, reply);
    }
  });
  auto report = done->Pop(std::chrono::seconds(30));
  if (!report.has_value()) {
    return Error(cove::v1::TIMED_OUT, grpc::StatusCode::DEADLINE_EXCEEDED,
                 "the accelerator probe is still running");
  }
  if (!report->ok()) return ToGrpc(report->status());
  resp->set_auto_accel((*report)->auto_accel);
  resp->set_qemu_path((*report)->hypervisor_path);
  resp->set_qemu_version((*report)->hypervisor_version);
  for (const auto& v : (*report)->verdicts) *resp->add_accels() = ToProto(v);
  return grpc::Status::OK;
}

}  // namespace cove::daemon::api
