#include "guest/agent/streams/streams.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "guest/agent/core/log.h"
#include "guest/agent/streams/exec.h"

namespace cove::agent {
namespace {

void MakeParentDirs(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    mkdir(path.substr(0, pos).c_str(), 0755);
  }
}

}  // namespace

StreamTable::~StreamTable() {
  // The session is over: its processes lose their terminal and their host.
  for (const Exec& e : execs_) {
    if (!e.exited) kill(-e.pid, SIGKILL);
  }
  for (const Listener& l : listeners_) unlink(l.path.c_str());
}

Relay* StreamTable::Find(uint32_t id) {
  auto it = relays_.find(id);
  return it == relays_.end() ? nullptr : it->second.get();
}

StreamTable::Exec* StreamTable::FindExec(uint32_t stream_id) {
  for (Exec& e : execs_) {
    if (e.stdout_id == stream_id) return &e;
  }
  return nullptr;
}

void StreamTable::OnOpen(uint32_t id, const std::string& payload) {
  v1::StreamOpen open;
  if (!open.ParseFromString(payload)) {
    mux_.Reset(id, "unparseable OPEN payload");
    return;
  }
  switch (open.target_case()) {
    case v1::StreamOpen::kExec:
      StartExec(id, open.exec());
      return;
    case v1::StreamOpen::kUnixConnect: {
      const std::string& path = open.unix_connect();
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
        mux_.Reset(id, "bad guest socket path");
        return;
      }
      std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
      Connect(id, AF_UNIX, &addr, sizeof(addr), path);
      return;
    }
    case v1::StreamOpen::kTcpConnect: {
      if (open.tcp_connect() == 0 || open.tcp_connect() > 65535) {
        mux_.Reset(id, "bad guest port");
        return;
      }
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(open.tcp_connect()));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      Connect(id, AF_INET, &addr, sizeof(addr), "127.0.0.1:" + std::to_string(open.tcp_connect()));
      return;
    }
    case v1::StreamOpen::kNetConnect:
      ConnectNet(id, open.net_connect());
      return;
    default:
      mux_.Reset(id, "this agent cannot open that kind of stream");
      return;
  }
}

void StreamTable::ConnectNet(uint32_t id, const v1::NetConnect& target) {
  if (target.port() == 0 || target.port() > 65535) {
    mux_.Reset(id, "bad guest port");
    return;
  }
  const auto port = htons(static_cast<uint16_t>(target.port()));
  sockaddr_storage storage{};
  socklen_t len = 0;
  std::string address = target.address();
  // A listener bound to every address is reached on the loopback.
  if (address.empty() || address == "0.0.0.0") address = "127.0.0.1";
  if (address == "::") address = "::1";
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = port;
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = port;
    len = sizeof(*v6);
  } else {
    mux_.Reset(id, "bad guest address: " + target.address());
    return;
  }
  const std::string what = (storage.ss_family == AF_INET6 ? "[" + address + "]" : address) + ":" +
                           std::to_string(target.port());
  if (target.proto() != v1::PROTO_UDP) {
    Connect(id, storage.ss_family, &storage, len, what);
    return;
  }
  UniqueFd fd(socket(storage.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid() || connect(fd.get(), reinterpret_cast<sockaddr*>(&storage), len) != 0) {
    mux_.Reset(id, "udp " + what + ": " + std::strerror(errno));
    return;
  }
  relays_[id] =
      std::make_unique<Relay>(mux_, id, Relay::Kind::kDatagram, std::move(fd), UniqueFd());
}

void StreamTable::StartExec(uint32_t id, const v1::ExecStart& start) {
  ExecOptions options;
  options.argv.assign(start.argv().begin(), start.argv().end());
  options.env.assign(start.env().begin(), start.env().end());
  options.cwd = start.cwd();
  options.tty = start.tty();
  options.rows = start.rows();
  options.cols = start.cols();
  options.term = start.term();
  SpawnedExec spawned = SpawnExec(options);
  if (spawned.pid < 0) {
    // Reported as an exit (127, like a shell) so the host shows the reason;
    // the stream then ends at once.
    v1::GuestToHost msg;
    v1::ExecExited* exited = msg.mutable_exec_exited();
    exited->set_stream_id(id);
    exited->set_exit_code(127);
    exited->set_error(spawned.error);
    mux_.CloseWrite(id);
    mux_.SendControl(msg.SerializeAsString());
    relays_[id] = std::make_unique<Relay>(mux_, id, Relay::Kind::kPipes, UniqueFd(), UniqueFd());
    return;
  }
  Exec exec;
  exec.pid = spawned.pid;
  exec.stdout_id = id;
  if (start.tty()) {
    relays_[id] =
        std::make_unique<Relay>(mux_, id, Relay::Kind::kPty, std::move(spawned.pty), UniqueFd());
  } else {
    relays_[id] = std::make_unique<Relay>(mux_, id, Relay::Kind::kPipes,
                                          std::move(spawned.stdout_r), std::move(spawned.stdin_w));
    v1::StreamOpen err_open;
    err_open.set_exec_stderr_of(id);
    const uint32_t err_id = mux_.Open(err_open.SerializeAsString());
    if (err_id != 0) {
      exec.stderr_id = err_id;
      relays_[err_id] = std::make_unique<Relay>(mux_, err_id, Relay::Kind::kPipes,
                                                std::move(spawned.stderr_r), UniqueFd());
    }
  }
  execs_.push_back(exec);
}

void StreamTable::Connect(uint32_t id, int domain, const void* addr, size_t addr_len,
                          const std::string& what) {
  UniqueFd fd(socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    mux_.Reset(id, std::string("socket: ") + std::strerror(errno));
    return;
  }
  bool connecting = false;
  if (connect(fd.get(), static_cast<const sockaddr*>(addr), static_cast<socklen_t>(addr_len)) !=
      0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      mux_.Reset(id, "connect " + what + ": " + std::strerror(errno));
      return;
    }
    connecting = true;
  }
  if (domain != AF_UNIX) {
    // Forwarded requests and answers, not bulk: no Nagle delay.
    const int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  relays_[id] = std::make_unique<Relay>(mux_, id, Relay::Kind::kSocket, std::move(fd), UniqueFd(),
                                        connecting);
}

void StreamTable::OnData(uint32_t id, std::string_view data) {
  if (Relay* r = Find(id)) {
    r->OnData(data);
  } else {
    mux_.Consumed(id, data.size());
  }
}

void StreamTable::OnCloseWrite(uint32_t id) {
  if (Relay* r = Find(id)) r->OnPeerClose();
}

void StreamTable::OnReset(uint32_t id) {
  relays_.erase(id);
  // The host gave up on an exec (its client went away): end the process.
  if (Exec* e = FindExec(id); e != nullptr && !e->exited) kill(-e->pid, SIGKILL);
}

void StreamTable::Resize(const v1::ExecResize& resize) {
  if (Relay* r = Find(resize.stream_id())) ResizePty(r->pty_fd(), resize.rows(), resize.cols());
}

void StreamTable::Signal(const v1::ExecSignal& signal) {
  Exec* e = FindExec(signal.stream_id());
  if (e == nullptr || e->exited || signal.signal() <= 0 || signal.signal() >= NSIG) return;
  kill(-e->pid, signal.signal());
}

void StreamTable::SetReverseSockets(const std::vector<v1::ReverseSocket>& sockets) {
  std::vector<Listener> kept;
  for (const v1::ReverseSocket& want : sockets) {
    auto it = std::find_if(listeners_.begin(), listeners_.end(), [&](const Listener& l) {
      return l.name == want.name() && l.path == want.guest_path();
    });
    if (it != listeners_.end()) {
      kept.push_back(std::move(*it));
      listeners_.erase(it);
      continue;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string& path = want.guest_path();
    if (path.empty() || path[0] != '/' || path.size() >= sizeof(addr.sun_path)) {
      Log("reverse socket %s: bad guest path '%s'", want.name().c_str(), path.c_str());
      continue;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    MakeParentDirs(path);
    unlink(path.c_str());
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(fd.get(), 128) != 0) {
      Log("reverse socket %s: cannot listen on %s: %s", want.name().c_str(), path.c_str(),
          std::strerror(errno));
      continue;
    }
    chmod(path.c_str(), 0660);
    kept.push_back(Listener{want.name(), path, std::move(fd)});
  }
  for (const Listener& gone : listeners_) unlink(gone.path.c_str());
  listeners_ = std::move(kept);
}

void StreamTable::Accept(Listener& listener) {
  while (true) {
    UniqueFd fd(accept4(listener.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) return;
    v1::StreamOpen open;
    open.set_reverse(listener.name);
    const uint32_t id = mux_.Open(open.SerializeAsString());
    if (id == 0) return;  // too many streams: the client sees its socket close
    relays_[id] =
        std::make_unique<Relay>(mux_, id, Relay::Kind::kSocket, std::move(fd), UniqueFd());
  }
}

bool StreamTable::OnChildExit(pid_t pid, int wait_status) {
  for (Exec& e : execs_) {
    if (e.pid != pid || e.exited) continue;
    e.exited = true;
    e.wait_status = wait_status;
    // Its output ends once what it wrote is read.
    for (uint32_t id : {e.stdout_id, e.stderr_id}) {
      if (Relay* r = Find(id)) {
        r->EndAtDrain();
        r->OnReadable();
      }
    }
    return true;
  }
  return false;
}

void StreamTable::Prepare(Host& host, PollSet& poll) {
  for (const auto& [id, relay] : relays_) {
    const uint32_t stream = id;
    if (int fd = relay->PollReadFd(); fd >= 0) {
      poll.Add(fd, POLLIN, [this, stream](short) {
        if (Relay* r = Find(stream)) r->OnReadable();
      });
    }
    if (int fd = relay->PollWriteFd(); fd >= 0) {
      poll.Add(fd, POLLOUT, [this, stream](short) {
        if (Relay* r = Find(stream)) r->OnWritable();
      });
    }
  }
  for (size_t i = 0; i < listeners_.size(); i++) {
    poll.Add(listeners_[i].fd.get(), POLLIN, [this, i](short) {
      if (i < listeners_.size()) Accept(listeners_[i]);
    });
  }
}

void StreamTable::Tick(Host& host) {
  for (auto it = execs_.begin(); it != execs_.end();) {
    Exec& e = *it;
    if (!e.exited) {
      ++it;
      continue;
    }
    Relay* out = Find(e.stdout_id);
    Relay* err = Find(e.stderr_id);
    if ((out != nullptr && !out->read_done()) || (err != nullptr && !err->read_done())) {
      ++it;
      continue;
    }
    v1::GuestToHost msg;
    v1::ExecExited* exited = msg.mutable_exec_exited();
    exited->set_stream_id(e.stdout_id);
    if (WIFEXITED(e.wait_status)) {
      exited->set_exit_code(WEXITSTATUS(e.wait_status));
    } else {
      exited->set_exit_code(-1);
      exited->set_signal(WIFSIGNALED(e.wait_status) ? WTERMSIG(e.wait_status) : 0);
    }
    mux_.SendControl(msg.SerializeAsString());
    it = execs_.erase(it);
  }
  for (auto it = relays_.begin(); it != relays_.end();) {
    if (it->second->Finished()) {
      it = relays_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace cove::agent
