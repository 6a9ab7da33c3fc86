#include "tests/fuzz/agent_link_guest.h"

#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "common/stream_mux.h"
#include "cove/agent/v1/agent.pb.h"

namespace cove::fuzz {
namespace {

// Bounds every wait on coved; a reconnect may wait out a backoff of a second.
constexpr int kMaxLoopRounds = 10000;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

AgentSocket::AgentSocket() {
  char dir[] = "/tmp/cove-agent-link-fuzz.XXXXXX";
  Check(mkdtemp(dir) != nullptr);
  dir_ = dir;
  path_ = dir_ + "/agent.sock";
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  Check(fd_ >= 0 && path_.size() < sizeof(addr.sun_path));
  path_.copy(addr.sun_path, path_.size());
  Check(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  Check(listen(fd_, 16) == 0);
}

AgentSocket::~AgentSocket() {
  close(fd_);
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

int AgentSocket::Accept() const {
  return accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

void AgentSocket::DropPending() const {
  for (int fd = Accept(); fd >= 0; fd = Accept()) close(fd);
}

bool GuestEnd::Accept(const AgentSocket& socket) {
  Close();
  // The connect is immediate on a unix socket; a reconnect waits for coved's
  // retry timer, so block in the loop after a few quick tries.
  for (int i = 0; i < kMaxLoopRounds && fd_ < 0; ++i) {
    uv_run(loop_.uv(), i < 10 ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    fd_ = socket.Accept();
  }
  if (fd_ < 0) return false;
  from_coved_ = link::FrameDecoder();
  to_coved_ = link::FrameDecoder();
  sent_invalid_ = false;
  reading_ = true;
  session_ = 0;
  Settle();
  return session_ != 0;
}

void GuestEnd::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void GuestEnd::Send(std::string_view bytes) {
  sent_ += bytes.size();
  if (!sent_invalid_ && !to_coved_.Feed(bytes)) {
    sent_invalid_ = true;
    to_coved_ = link::FrameDecoder();  // what it holds no longer matters
  }
  while (to_coved_.Next()) {
  }
  while (!bytes.empty() && fd_ >= 0) {
    const ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      uv_run(loop_.uv(), UV_RUN_NOWAIT);  // coved reads whenever it can
      Read();
    } else {
      break;  // coved closed the connection
    }
  }
}

void GuestEnd::Settle() {
  // Three quiet turns: coved batches its writes to the turn after a read,
  // and a write done may start the next.
  int quiet = 0;
  for (int i = 0; i < kMaxLoopRounds && quiet < 3; ++i) {
    uv_run(loop_.uv(), UV_RUN_NOWAIT);
    quiet = Read() || Unread() > 0 ? 0 : quiet + 1;
  }
}

bool GuestEnd::CovedClosed() const {
  if (fd_ < 0) return true;
  pollfd p{fd_, POLLRDHUP, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
}

bool GuestEnd::Read() {
  if (fd_ < 0 || !reading_) return false;
  bool got = false;
  char buf[64 * 1024];
  while (true) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got = true;
    // Coved only ever sends valid frames.
    Check(from_coved_.Feed(std::string_view(buf, static_cast<size_t>(n))));
    while (auto frame = from_coved_.Next()) OnCovedFrame(*frame);
  }
  return got;
}

void GuestEnd::OnCovedFrame(const link::Frame& frame) {
  switch (frame.type) {
    case link::FrameType::kControl: {
      Check(frame.stream_id == 0);
      cove::agent::v1::HostToGuest msg;
      Check(msg.ParseFromString(frame.payload));
      if (msg.has_host_hello()) {
        Check(msg.host_hello().session_id() != 0);
        session_ = msg.host_hello().session_id();
      }
      break;
    }
    case link::FrameType::kOpen:
      Check(frame.stream_id % 2 == 1);  // the host's streams are odd
      break;
    case link::FrameType::kData:
      Check(frame.payload.size() <= link::StreamMux::kMaxChunk);
      break;
    default:
      Check(frame.stream_id != 0);
      break;
  }
}

size_t GuestEnd::Unread() const {
  // On a unix stream socket: bytes sent and not yet read by the peer.
  int n = 0;
  if (fd_ < 0 || ioctl(fd_, SIOCOUTQ, &n) != 0) return 0;
  return static_cast<size_t>(n);
}

}  // namespace cove::fuzz
