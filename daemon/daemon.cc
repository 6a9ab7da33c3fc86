#include "daemon/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/version.h"
#include "daemon/api/daemon_service.h"
#include "daemon/api/images_service.h"
#include "daemon/api/machines_service.h"
#include "daemon/api/unix_listener.h"
#include "daemon/driver/qemu/qemu_driver.h"
#include "daemon/image/image_builder.h"
#include "daemon/machine/machine_manager.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

// Bounds what one client can make coved hold.
constexpr int kMaxMessageBytes = 4 << 20;

std::string AgentPath(const std::string& exe_dir) {
  if (const char* env = std::getenv("COVE_AGENT_PATH"); env && *env) return env;
  // Installed (packaging/CMakeLists.txt): PREFIX/lib/cove/cove-agent.
  const std::string installed = exe_dir + "/../lib/cove/cove-agent";
  if (::access(installed.c_str(), X_OK) == 0) return installed;
  return exe_dir + "/cove-agent";
}

// The host's boot: Linux's boot_id, macOS's boot time.
std::string BootId() {
#if defined(__APPLE__)
  timeval boot{};
  size_t size = sizeof(boot);
  int mib[2] = {CTL_KERN, KERN_BOOTTIME};
  if (::sysctl(mib, 2, &boot, &size, nullptr, 0) != 0) return "";
  return std::to_string(boot.tv_sec);
#else
  auto id = ReadFile("/proc/sys/kernel/random/boot_id");
  return id.ok() ? std::string(absl::StripAsciiWhitespace(*id)) : "";
#endif
}

// True for the first coved since the host booted (at login), false for a
// coved restarted after a crash or an upgrade: autostart runs only then, so
// a machine the user stopped stays stopped when coved is restarted.
bool FirstSinceBoot(const std::string& marker) {
  const std::string boot = BootId();
  auto last = ReadFile(marker);
  if (last.ok() && *last == boot) return false;
  if (auto st = WriteFileAtomically(marker, boot, 0600); !st.ok()) {
    spdlog::warn("cannot record the boot for autostart: {}", std::string(st.message()));
  }
  return true;
}

// The accelerator verdicts hold for the host, so every cove home of this
// user shares them; the home's own cache when the user's cannot be made.
std::string AccelCacheDir(const HomeLayout& layout) {
  const std::string dir = UserCacheDir();
  if (!dir.empty()) {
    const absl::Status st = EnsurePrivateDir(dir);
    if (st.ok()) return dir;
    spdlog::warn("accelerator verdicts go to {}: {}", layout.cache(), std::string(st.message()));
  }
  return layout.cache();
}

}  // namespace

absl::Status RunDaemon(const DaemonOptions& options) {
  const HomeLayout& layout = options.layout;
  for (const std::string& dir : {layout.images(), layout.machines(), layout.cache()}) {
    if (auto st = EnsurePrivateDir(dir); !st.ok()) return st;
  }
  EventLoop loop;
  EventBus events;
  MachineStore store(layout);
  ImageStore images(layout);
  qemu::QemuDriver driver(loop);
  AccelResolver accel(loop, driver, AccelCacheDir(layout));
  PortRegistry ports;
  const HostResources host = HostResources::Probe(layout.home);
  MachineEnv env{loop, driver, store, images, events, accel, ports, AgentPath(options.exe_dir)};
  MachineManager manager(env);
  ImageBuilder builder(loop, ImageBuilder::FindScript(options.exe_dir));
  manager.LoadAll();
  accel.Kick(host.arch);  // probe now, so the first start need not wait

  api::PeerAuth auth(::getuid());
  api::MachinesService machines_service(loop, manager, images, events, auth, host);
  api::ImagesService images_service(loop, manager, images, builder, auth,
                                    layout.cache() + "/image-build");
  api::DaemonService daemon_service(loop, accel, auth, host, layout.home, layout.socket());

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder server_builder;
  server_builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  server_builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Idle, the sync server's pollers would wake every second just to look
  // for shutdown; coved must not. One queue, woken by work, not by a clock.
  server_builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
  server_builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  server_builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::CQ_TIMEOUT_MSEC,
                                     60 * 1000);
  server_builder.RegisterService(&machines_service);
  server_builder.RegisterService(&images_service);
  server_builder.RegisterService(&daemon_service);
  std::unique_ptr<grpc::Server> server = server_builder.BuildAndStart();
  if (!server) return absl::InternalError("cannot start the gRPC server");

  api::UnixListener listener(layout.socket(), auth);
  auto activated = listener.TakeActivated();
  if (!activated.ok()) return activated.status();
  if (!*activated) {
    if (auto st = listener.Listen(); !st.ok()) return st;
  }
  listener.Serve(server.get());
  spdlog::info("coved {} listening on {} (pid {}{})", kVersion, layout.socket(), ::getpid(),
               *activated ? ", socket-activated" : "");
  if (FirstSinceBoot(layout.home + "/boot-id")) manager.Autostart();

  // SIGTERM / SIGINT: stop accepting, give RPCs 3 s, stop the loop. The
  // shutdown runs on its own thread because Server::Shutdown waits for
  // handlers, which may be waiting for the loop. Machines keep running; the
  // next coved adopts them.
  std::thread shutdown_thread;
  std::function<void(int)> on_signal = [&](int signum) {
    spdlog::info("signal {}: shutting down", signum);
    if (shutdown_thread.joinable()) return;
    shutdown_thread = std::thread([&]() {
      listener.Stop();
      events.CloseAll();
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
      loop.Stop();
    });
  };
  uv_signal_t signals[2];
  for (uv_signal_t& handle : signals) {
    uv_signal_init(loop.uv(), &handle);
    handle.data = &on_signal;
  }
  auto dispatch = [](uv_signal_t* h, int signum) {
    (*static_cast<std::function<void(int)>*>(h->data))(signum);
  };
  uv_signal_start(&signals[0], dispatch, SIGTERM);
  uv_signal_start(&signals[1], dispatch, SIGINT);

  loop.Run();
  if (shutdown_thread.joinable()) shutdown_thread.join();
  server->Wait();
  for (uv_signal_t& handle : signals) uv_close(reinterpret_cast<uv_handle_t*>(&handle), nullptr);
  uv_run(loop.uv(), UV_RUN_NOWAIT);
  spdlog::info("coved stopped");
  return absl::OkStatus();
}

}  // namespace cove::daemon
