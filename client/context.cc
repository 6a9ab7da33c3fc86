#include "client/context.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/subprocess.h"

namespace cove::client {
namespace {

// True if something accepts connections on the socket now.
bool SocketAnswers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string SelfDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

const HomeLayout& Context::layout() {
  if (!layout_) {
    auto home = ResolveCoveHome();
    if (!home.ok()) std::exit(Fail(home.status()));
    layout_ = std::make_unique<HomeLayout>(HomeLayout{*home});
  }
  return *layout_;
}

absl::Status Context::EnsureDaemon(bool explicit_start) {
  const std::string sock = layout().socket();
  if (auto st = CheckSocketPath(sock); !st.ok()) return st;
  if (SocketAnswers(sock)) return absl::OkStatus();
  if (const char* no = std::getenv("COVE_NO_AUTOSTART");
      !explicit_start && no && std::string(no) == "1") {
    return absl::UnavailableError(absl::StrCat("coved is not running (no answer on ", sock,
                                               ") and COVE_NO_AUTOSTART=1; start it with "
                                               "`coved &` or unset COVE_NO_AUTOSTART"));
  }
  if (auto st = EnsurePrivateDir(layout().home); !st.ok()) return st;
  std::string coved = SelfDir() + "/coved";
  if (const char* env = std::getenv("COVED_PATH"); env && *env) coved = env;
  auto pid = SpawnDetached({coved}, layout().home + "/coved.stderr.log");
  if (!pid.ok()) return pid.status();
  std::fprintf(stderr, "cove: coved was not running; started it (pid %d, log %s)\n", *pid,
               layout().log().c_str());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (SocketAnswers(sock)) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::UnavailableError(absl::StrCat("coved did not come up within 10 s; see ",
                                             layout().log(), " and ", layout().home,
                                             "/coved.stderr.log"));
}

std::shared_ptr<grpc::Channel> Context::Channel() {
  if (channel_) return channel_;
  if (auto st = EnsureDaemon(); !st.ok()) std::exit(Fail(st));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(4 << 20);
  channel_ = grpc::CreateCustomChannel("unix:" + layout().socket(),
                                       grpc::InsecureChannelCredentials(), args);
  return channel_;
}

cove::v1::Machines::Stub& Context::machines() {
  if (!machines_) machines_ = cove::v1::Machines::NewStub(Channel());
  return *machines_;
}

cove::v1::Images::Stub& Context::images() {
  if (!images_) images_ = cove::v1::Images::NewStub(Channel());
  return *images_;
}

cove::v1::Daemon::Stub& Context::daemon() {
  if (!daemon_) daemon_ = cove::v1::Daemon::NewStub(Channel());
  return *daemon_;
}

int Context::Fail(const grpc::Status& status) {
  std::fprintf(stderr, "cove: %s\n", status.error_message().c_str());
  return 1;
}

int Context::Fail(const absl::Status& status) {
  std::fprintf(stderr, "cove: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace cove::client
