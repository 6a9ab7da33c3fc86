#include "agent_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace cove::agent::test {
namespace {

int64_t ClockNowMs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// Waits for `events` on `fd` until `deadline_ms` (monotonic); false on timeout.
bool WaitFd(int fd, short events, int64_t deadline_ms) {
  while (true) {
    int64_t left = deadline_ms - MonotonicMs();
    if (left < 0) left = 0;
    pollfd pfd{fd, events, 0};
    int n = poll(&pfd, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) Fail("poll");
  }
}

}  // namespace

int64_t MonotonicMs() { return ClockNowMs(CLOCK_MONOTONIC); }
int64_t UnixMs() { return ClockNowMs(CLOCK_REALTIME); }

std::string AgentBinary() {
  if (const char* env = std::getenv("COVE_AGENT_BINARY")) return env;
  return COVE_AGENT_BINARY;
}

HostPeer::HostPeer() {
  char tmpl[] = "/tmp/cove-agent-test.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Fail("mkdtemp");
  dir_ = tmpl;
  socket_path_ = dir_ + "/agent.sock";
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) Fail("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof(addr.sun_path) - 1);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Fail("bind");
  if (listen(listen_fd_, 4) != 0) Fail("listen");
}

HostPeer::~HostPeer() {
  CloseConnection();
  if (listen_fd_ >= 0) close(listen_fd_);
  unlink(socket_path_.c_str());
  rmdir(dir_.c_str());
}

bool HostPeer::Accept(int timeout_ms) {
  CloseConnection();
  if (!WaitFd(listen_fd_, POLLIN, MonotonicMs() + timeout_ms)) {
    last_error_ = "no connection from the agent within " + std::to_string(timeout_ms) + " ms";
    return false;
  }
  conn_fd_ = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn_fd_ < 0) Fail("accept4");
  decoder_ = link::FrameDecoder();
  last_error_.clear();
  return true;
}

void HostPeer::CloseConnection() {
  if (conn_fd_ >= 0) close(conn_fd_);
  conn_fd_ = -1;
}

void HostPeer::Send(const v1::HostToGuest& message) {
  link::Frame frame;
  frame.type = link::FrameType::kControl;
  frame.stream_id = 0;
  message.SerializeToString(&frame.payload);
  SendFrame(frame);
}

void HostPeer::SendFrame(const link::Frame& frame) { SendRaw(link::EncodeFrame(frame)); }

void HostPeer::SendRaw(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = send(conn_fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) Fail("send to the agent");
    done += static_cast<size_t>(n);
  }
}

std::optional<link::Frame> HostPeer::ReadFrame(int timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (true) {
    if (auto frame = decoder_.Next()) return frame;
    if (conn_fd_ < 0) {
      last_error_ = "not connected";
      return std::nullopt;
    }
    if (!WaitFd(conn_fd_, POLLIN, deadline)) {
      last_error_ = "no frame from the agent within " + std::to_string(timeout_ms) + " ms";
      return std::nullopt;
    }
    char buf[65536];
    ssize_t n = read(conn_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      last_error_ = n == 0 ? "agent closed the connection" : std::strerror(errno);
      return std::nullopt;
    }
    if (!decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)))) {
      last_error_ = decoder_.error();
      return std::nullopt;
    }
  }
}

std::optional<v1::GuestToHost> HostPeer::ReadControl(int timeout_ms) {
  auto frame = ReadFrame(timeout_ms);
  if (!frame) return std::nullopt;
  if (frame->type != link::FrameType::kControl || frame->stream_id != 0) {
    last_error_ = "expected a CONTROL frame on stream 0, got type " +
                  std::to_string(static_cast<int>(frame->type)) + " on stream " +
                  std::to_string(frame->stream_id);
    return std::nullopt;
  }
  v1::GuestToHost message;
  if (!message.ParseFromString(frame->payload)) {
    last_error_ = "unparseable GuestToHost";
    return std::nullopt;
  }
  return message;
}

std::optional<v1::GuestToHost> HostPeer::ReadUntil(v1::GuestToHost::MsgCase kind, int timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (true) {
    int64_t left = deadline - MonotonicMs();
    auto message = ReadControl(static_cast<int>(left < 0 ? 0 : left));
    if (!message || message->msg_case() == kind) return message;
    last_error_ = "last message seen: case " + std::to_string(message->msg_case());
  }
}

AgentProcess::AgentProcess(const std::vector<std::string>& args) {
  std::vector<std::string> all = {AgentBinary()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : all) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int err = posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ);
  if (err != 0) {
    errno = err;
    Fail("posix_spawn " + all[0]);
  }
}

AgentProcess::~AgentProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

std::optional<int> AgentProcess::WaitExit(int timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return status;
    }
    if (r < 0 && errno != EINTR) Fail("waitpid");
    if (MonotonicMs() >= deadline) return std::nullopt;
    // Polling a child's state has no fd to wait on; nap briefly between looks.
    poll(nullptr, 0, 10);
  }
}

long AgentProcess::CpuTicks() const {
  std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

void AgentProcess::Signal(int sig) { kill(pid_, sig); }

}  // namespace cove::agent::test
