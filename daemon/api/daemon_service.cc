#include "daemon/api/daemon_service.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include "common/version.h"
#include "daemon/api/status.h"
#include "daemon/loop/channel.h"

namespace cove::daemon::api {

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
  // Waits for the accelerator probe if it is still running (seconds at most).
  auto done = std::make_shared<Channel<absl::StatusOr<AccelReport>>>(1);
  loop_.Post([this, done, reprobe = req->reprobe_accels()]() {
    auto reply = [done](absl::StatusOr<AccelReport> r) { done->Push(r, true); };
    if (reprobe) {
      accel_.Reprobe(host_.arch, reply);
    } else {
      accel_.Resolve(host_.arch, reply);
    }
  });
  auto report = done->Pop(std::chrono::seconds(30));
  if (!report.has_value()) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
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
