#include "daemon/forward/port_forward.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

bool IsV6(const std::string& ip) { return ip.find(':') != std::string::npos; }

int ParseAddr(const std::string& ip, uint16_t port, sockaddr_storage* out) {
  if (IsV6(ip)) return uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(out));
  return uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(out));
}

std::string PeerKey(const sockaddr* addr) {
  const size_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return std::string(reinterpret_cast<const char*>(addr), len);
}

// One receive buffer per loop thread for every UDP forward: a datagram is
// framed into its stream (copied) before the next receive.
constexpr size_t kDatagramMax = 65535;
char* DatagramBuffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kDatagramMax]);
  return buffer.get();
}

struct UdpSendReq {
  uv_udp_send_t req{};
  std::string data;
};

}  // namespace

struct PortForward::TcpListener {
  uv_tcp_t tcp{};
  PortForward* owner = nullptr;
};

struct PortForward::UdpSocket {
  uv_udp_t udp{};
  PortForward* owner = nullptr;
};

struct PortForward::UdpSession {
  sockaddr_storage peer{};
  UdpSocket* socket = nullptr;
  uint32_t id = 0;
  std::string inbox;  // datagrams from the guest, not yet whole
  uint64_t last_ms = 0;
};

// ------------------------------------------------------------ PortRegistry

void PortRegistry::Release(const ForwardKey& key, const std::string& machine) {
  auto it = holders_.find(key);
  if (it != holders_.end() && it->second == machine) holders_.erase(it);
}

std::string PortRegistry::HolderOf(cove::v1::Proto proto, uint16_t port,
                                   const std::string& except) const {
  for (const auto& [key, machine] : holders_) {
    if (key.proto == proto && key.host_port == port && machine != except) return machine;
  }
  return "";
}

// ------------------------------------------------------------ LaneTable

LaneTable::LaneTable(std::string machine, OpenFn open, CloseFn close,
                     std::function<void(uint16_t)> on_change)
    : machine_(std::move(machine)),
      open_(std::move(open)),
      close_(std::move(close)),
      on_change_(std::move(on_change)) {}

LaneTable::~LaneTable() {
  *alive_ = false;
  for (const auto& [guest_port, lane] : lanes_) {
    if (lane.host_port != 0 && close_) close_(lane.host_port);
  }
}

void LaneTable::Acquire(uint16_t guest_port) {
  if (!open_) return;
  Lane& lane = lanes_[guest_port];
  if (++lane.refs > 1) return;
  lane.generation = next_generation_++;
  std::weak_ptr<bool> alive = alive_;
  // The answer may come after this table is gone (the machine stopped) or
  // the lane is no longer wanted: then the new lane is closed at once.
  open_(guest_port, [this, alive, guest_port, generation = lane.generation,
                     close = close_](absl::StatusOr<uint16_t> port) {
    auto it = alive.expired() ? decltype(lanes_)::iterator{} : lanes_.find(guest_port);
    if (alive.expired() || it == lanes_.end() || it->second.generation != generation) {
      if (port.ok() && close) close(*port);
      return;
    }
    if (!port.ok()) {
      spdlog::warn("{}: no lane to guest port {} ({}); its connections go over the agent link",
                   machine_, guest_port, std::string(port.status().message()));
      return;
    }
    it->second.host_port = *port;
    spdlog::debug("{}: lane 127.0.0.1:{} to guest port {}", machine_, *port, guest_port);
    if (on_change_) on_change_(guest_port);
  });
}

void LaneTable::Release(uint16_t guest_port) {
  auto it = lanes_.find(guest_port);
  if (it == lanes_.end() || --it->second.refs > 0) return;
  if (it->second.host_port != 0 && close_) close_(it->second.host_port);
  lanes_.erase(it);
}

uint16_t LaneTable::HostPort(uint16_t guest_port) const {
  auto it = lanes_.find(guest_port);
  return it == lanes_.end() ? 0 : it->second.host_port;
}

// ------------------------------------------------------------ PortForward

PortForward::PortForward(Env env, ForwardKey key, ForwardTarget target,
                         std::function<void(const PortForward&)> on_change)
    : env_(std::move(env)),
      key_(std::move(key)),
      target_(std::move(target)),
      on_change_(std::move(on_change)),
      retry_timer_(env_.loop),
      idle_timer_(env_.loop) {}

PortForward::~PortForward() {
  *alive_ = false;
  on_change_ = nullptr;
  while (!sessions_.empty()) EndSession(sessions_.begin()->first, "the forward closed");
  CloseSockets();
  conns_.reset();
  if (claimed_) env_.registry.Release(key_, env_.machine);
  if (lane_held_) env_.lanes->Release(target_.guest_port);
}

bool PortForward::CanUseLane() const {
  return key_.proto == cove::v1::PROTO_TCP && env_.lanes != nullptr &&
         target_.network_reachable;
}

cove::v1::Forward PortForward::Info() const {
  cove::v1::Forward f;
  f.set_proto(key_.proto);
  f.set_host_ip(key_.host_ip);
  f.set_host_port(key_.host_port);
  f.set_guest_ip(target_.guest_ip);
  f.set_guest_port(target_.guest_port);
  f.set_state(state_);
  f.set_error(error_);
  f.set_holder(holder_);
  f.set_static_(target_.is_static);
  f.set_connections(static_cast<uint32_t>(
      key_.proto == cove::v1::PROTO_UDP ? sessions_.size() : (conns_ ? conns_->size() : 0)));
  f.set_retries(retries_);
  f.set_route(lane_held_ && env_.lanes->HostPort(target_.guest_port) != 0
                  ? cove::v1::FORWARD_ROUTE_NETWORK
                  : cove::v1::FORWARD_ROUTE_AGENT);
  return f;
}

void PortForward::SetState(cove::v1::ForwardState state, std::string error) {
  if (state == state_ && error == error_) return;
  state_ = state;
  error_ = std::move(error);
  if (on_change_) on_change_(*this);
}

void PortForward::Start() { TryBind(); }

void PortForward::TryBind() {
  if (state_ == cove::v1::FORWARD_STATE_CLOSING || state_ == cove::v1::FORWARD_STATE_CLOSED) {
    return;
  }
  if (int rc = Bind(key_.host_ip); rc != 0) {
    OnBindError(rc);
    return;
  }
  // The default host end, 127.0.0.1, is served on ::1 as well when this
  // host has IPv6 and the port is free there; not having it is no error.
  if (key_.host_ip == "127.0.0.1") Bind("::1");
  if (key_.proto == cove::v1::PROTO_TCP && !conns_) {
    std::weak_ptr<bool> alive = alive_;
    std::function<uint16_t()> lane;
    if (CanUseLane()) {
      env_.lanes->Acquire(target_.guest_port);
      lane_held_ = true;
      lane = [this]() { return env_.lanes->HostPort(target_.guest_port); };
    }
    conns_ = std::make_unique<ConnSet>(
        env_.loop, absl::StrCat(env_.machine, ": ", Describe(key_)), GuestTarget(), env_.link,
        kMaxConnections,
        [this, alive]() {
          if (!alive.expired()) MaybeClosed();
        },
        std::move(lane));
  }
  env_.registry.Claim(key_, env_.machine);
  claimed_ = true;
  holder_.clear();
  retry_ms_ = kFirstRetryMs;
  SetState(cove::v1::FORWARD_STATE_LISTENING, "");
}

cove::agent::v1::StreamOpen PortForward::GuestTarget() const {
  cove::agent::v1::StreamOpen open;
  auto* net = open.mutable_net_connect();
  net->set_proto(key_.proto == cove::v1::PROTO_UDP ? cove::agent::v1::PROTO_UDP
                                                   : cove::agent::v1::PROTO_TCP);
  net->set_address(target_.guest_ip);
  net->set_port(target_.guest_port);
  return open;
}

int PortForward::Bind(const std::string& ip) {
  return key_.proto == cove::v1::PROTO_UDP ? BindUdp(ip) : BindTcp(ip);
}

void PortForward::Close(TcpListener* l) {
  l->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp),
           [](uv_handle_t* h) { delete static_cast<TcpListener*>(h->data); });
}

void PortForward::Close(UdpSocket* s) {
  s->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&s->udp),
           [](uv_handle_t* h) { delete static_cast<UdpSocket*>(h->data); });
}

int PortForward::BindTcp(const std::string& ip) {
  sockaddr_storage addr{};
  if (int rc = ParseAddr(ip, key_.host_port, &addr); rc != 0) return rc;
  auto* l = new TcpListener;
  l->owner = this;
  uv_tcp_init_ex(env_.loop.uv(), &l->tcp, addr.ss_family);
  l->tcp.data = l;
  int rc = uv_tcp_bind(&l->tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
  // libuv may report a taken port only when listening.
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp), 511, [](uv_stream_t* server, int st) {
      auto* self = static_cast<TcpListener*>(server->data);
      PortForward* owner = self->owner;
      if (st != 0 || owner == nullptr || !owner->conns_) return;
      owner->conns_->Accept(server, sizeof(uv_tcp_t), [owner](uv_stream_t* s) {
        auto* tcp = reinterpret_cast<uv_tcp_t*>(s);
        uv_tcp_init(owner->env_.loop.uv(), tcp);
        uv_tcp_nodelay(tcp, 1);  // requests and answers, not bulk: no Nagle delay
      });
    });
  }
  if (rc != 0) {
    Close(l);
    return rc;
  }
  tcp_.push_back(l);
  return 0;
}

int PortForward::BindUdp(const std::string& ip) {
  sockaddr_storage addr{};
  if (int rc = ParseAddr(ip, key_.host_port, &addr); rc != 0) return rc;
  auto* s = new UdpSocket;
  s->owner = this;
  uv_udp_init(env_.loop.uv(), &s->udp);
  s->udp.data = s;
  int rc = uv_udp_bind(&s->udp, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_udp_recv_start(
        &s->udp,
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          *buf = uv_buf_init(DatagramBuffer(), kDatagramMax);
        },
        [](uv_udp_t* handle, ssize_t n, const uv_buf_t* buf, const sockaddr* from, unsigned) {
          auto* self = static_cast<UdpSocket*>(handle->data);
          if (n <= 0 || from == nullptr || self->owner == nullptr) return;
          self->owner->OnDatagram(self, from, buf->base, static_cast<size_t>(n));
        });
  }
  if (rc != 0) {
    Close(s);
    return rc;
  }
  udp_.push_back(s);
  return 0;
}

void PortForward::CloseSockets() {
  for (TcpListener* l : tcp_) Close(l);
  tcp_.clear();
  for (UdpSocket* s : udp_) Close(s);
  udp_.clear();
}

void PortForward::OnBindError(int rc) {
  const std::string port = std::to_string(key_.host_port);
  if (rc == UV_EADDRINUSE) {
    retries_++;
    holder_ = env_.registry.HolderOf(key_.proto, key_.host_port, env_.machine);
    std::string why = holder_.empty()
                          ? absl::StrCat("host port ", port,
                                         " is in use by another program; cove binds it as "
                                         "soon as it is free")
                          : absl::StrCat("host port ", port, " is held by cove machine '", holder_,
                                         "'; cove binds it as soon as that forward closes");
    SetState(cove::v1::FORWARD_STATE_CONFLICT, std::move(why));
    retry_timer_.Start(retry_ms_, [this]() { TryBind(); });
    retry_ms_ = std::min(retry_ms_ * 2, kMaxRetryMs);
    return;
  }
  std::string why;
  if (rc == UV_EACCES || rc == UV_EPERM) {
    why = absl::StrCat("binding host port ", port,
                       " needs privileges (root, CAP_NET_BIND_SERVICE, or sysctl "
                       "net.ipv4.ip_unprivileged_port_start=",
                       port, "); or map it to a host port of 1024 or more with a port rule");
  } else if (rc == UV_EADDRNOTAVAIL) {
    why = absl::StrCat("this host has no address ", key_.host_ip, "; fix the rule's hostIP");
  } else {
    why = absl::StrCat("cannot bind ", Describe(key_), ": ", uv_strerror(rc));
  }
  SetState(cove::v1::FORWARD_STATE_FAILED, std::move(why));
}

void PortForward::BeginClose() {
  if (state_ == cove::v1::FORWARD_STATE_CLOSING || state_ == cove::v1::FORWARD_STATE_CLOSED) {
    return;
  }
  retry_timer_.Stop();
  CloseSockets();  // new connections are refused from here on
  while (!sessions_.empty()) EndSession(sessions_.begin()->first, "the guest listener is gone");
  if (claimed_) env_.registry.Release(key_, env_.machine);
  claimed_ = false;
  // Connections already through the lane keep going; the lane takes no new
  // ones (and goes with the last forward to its port).
  if (lane_held_) env_.lanes->Release(target_.guest_port);
  lane_held_ = false;
  SetState(cove::v1::FORWARD_STATE_CLOSING, "");
  MaybeClosed();
}

void PortForward::MaybeClosed() {
  if (state_ != cove::v1::FORWARD_STATE_CLOSING) return;
  if (conns_ && conns_->size() > 0) return;  // open connections drain first
  SetState(cove::v1::FORWARD_STATE_CLOSED, "");
}

void PortForward::OnLinkReady() {
  if (conns_) conns_->OnLinkReady();
}

void PortForward::OnDatagram(UdpSocket* socket, const sockaddr* from, const char* data, size_t n) {
  AgentLink* link = env_.link();
  if (link == nullptr || !link->ready()) return;  // no session: dropped, as UDP may
  const std::string peer = PeerKey(from);
  auto it = sessions_.find(peer);
  if (it == sessions_.end()) {
    if (sessions_.size() >= kMaxUdpSessions) {
      auto oldest = sessions_.begin();
      for (auto i = sessions_.begin(); i != sessions_.end(); ++i) {
        if (i->second->last_ms < oldest->second->last_ms) oldest = i;
      }
      EndSession(oldest->first, "too many UDP sessions");
    }
    auto session = std::make_unique<UdpSession>();
    std::memcpy(&session->peer, from, peer.size());
    session->socket = socket;
    std::weak_ptr<bool> alive = alive_;
    StreamCallbacks callbacks{
        .on_data =
            [this, alive, peer](std::string_view bytes) {
              if (alive.expired()) return;
              auto s = sessions_.find(peer);
              if (s == sessions_.end()) return;
              s->second->inbox.append(bytes);
              SendToClient(*s->second);
            },
        .on_close_write =
            [this, alive, peer]() {
              if (!alive.expired()) EndSession(peer, "the guest ended the session");
            },
        .on_reset =
            [this, alive, peer](const std::string&) {
              if (alive.expired()) return;
              auto s = sessions_.find(peer);
              if (s == sessions_.end()) return;
              s->second->id = 0;  // already gone from the link
              sessions_.erase(s);
            },
    };
    session->id = link->OpenStream(GuestTarget(), std::move(callbacks));
    if (session->id == 0) return;
    it = sessions_.emplace(peer, std::move(session)).first;
    if (sessions_.size() == 1) {
      idle_timer_.Start(
          kUdpIdleMs / 4, [this]() { ExpireSessions(); }, kUdpIdleMs / 4);
    }
  }
  UdpSession& s = *it->second;
  s.last_ms = SteadyNowMs();
  if (link->StreamWritable(s.id) < n + 2) return;  // the guest is behind: dropped
  std::string framed(2 + n, '\0');
  framed[0] = static_cast<char>(n >> 8);
  framed[1] = static_cast<char>(n & 0xff);
  std::memcpy(framed.data() + 2, data, n);
  link->WriteStream(s.id, framed);
}

void PortForward::SendToClient(UdpSession& session) {
  size_t used = 0;
  const std::string& in = session.inbox;
  while (in.size() - used >= 2) {
    const auto* p = reinterpret_cast<const unsigned char*>(in.data() + used);
    const size_t n = (size_t{p[0]} << 8) | p[1];
    if (in.size() - used < 2 + n) break;
    // The socket may have closed (BeginClose) while the reply travelled.
    if (std::find(udp_.begin(), udp_.end(), session.socket) != udp_.end()) {
      auto* req = new UdpSendReq;
      req->data.assign(in, used + 2, n);
      req->req.data = req;
      uv_buf_t buf = uv_buf_init(req->data.data(), static_cast<unsigned>(n));
      if (uv_udp_send(&req->req, &session.socket->udp, &buf, 1,
                      reinterpret_cast<const sockaddr*>(&session.peer), [](uv_udp_send_t* r, int) {
                        delete static_cast<UdpSendReq*>(r->data);
                      }) != 0) {
        delete req;
      }
    }
    used += 2 + n;
  }
  session.inbox.erase(0, used);
  session.last_ms = SteadyNowMs();
  if (AgentLink* link = env_.link(); link != nullptr && used > 0) {
    link->ConsumeStream(session.id, used);
  }
}

void PortForward::ExpireSessions() {
  const uint64_t now = SteadyNowMs();
  std::vector<std::string> idle;
  for (const auto& [peer, s] : sessions_) {
    if (now - s->last_ms >= kUdpIdleMs) idle.push_back(peer);
  }
  for (const std::string& peer : idle) EndSession(peer, "idle");
  if (sessions_.empty()) idle_timer_.Stop();
}

void PortForward::EndSession(const std::string& peer, const std::string& why) {
  auto it = sessions_.find(peer);
  if (it == sessions_.end()) return;
  const uint32_t id = it->second->id;
  sessions_.erase(it);
  if (AgentLink* link = env_.link(); link != nullptr && id != 0) link->ResetStream(id, why);
}

// ------------------------------------------------------------ PortForwarder

PortForwarder::PortForwarder(PortForward::Env env,
                             std::function<void(const cove::v1::Forward&)> on_change)
    : env_(std::move(env)), on_change_(std::move(on_change)) {
  if (env_.open_lane) {
    lanes_ = std::make_unique<LaneTable>(env_.machine, env_.open_lane, env_.close_lane,
                                         [this](uint16_t guest_port) { OnLaneChange(guest_port); });
    env_.lanes = lanes_.get();
  }
}

void PortForwarder::OnLaneChange(uint16_t guest_port) {
  // The route shows in the forward: tell watchers it changed.
  for (auto& [key, f] : active_) {
    if (f->CanUseLane() && f->target().guest_port == guest_port && on_change_) {
      on_change_(f->Info());
    }
  }
}

PortForwarder::~PortForwarder() {
  *alive_ = false;
  on_change_ = nullptr;
  active_.clear();
  closing_.clear();
  lanes_.reset();  // after the forwards that hold lanes
}

void PortForwarder::SetSpec(const cove::v1::MachineSpec& spec) {
  spec_ = spec;
  Reconcile();
}

void PortForwarder::OnListeners(const cove::agent::v1::Listeners& listeners) {
  listeners_.assign(listeners.listeners().begin(), listeners.listeners().end());
  Reconcile();
}

void PortForwarder::OnLinkReady() {
  for (auto& [key, f] : active_) f->OnLinkReady();
}

void PortForwarder::Reconcile() {
  const std::map<ForwardKey, ForwardTarget> desired = DesiredForwards(spec_, listeners_);
  for (auto it = active_.begin(); it != active_.end();) {
    auto want = desired.find(it->first);
    if (want != desired.end() && want->second == it->second->target()) {
      ++it;
      continue;
    }
    std::unique_ptr<PortForward> f = std::move(it->second);
    it = active_.erase(it);
    PortForward* raw = f.get();
    closing_.push_back(std::move(f));
    raw->BeginClose();
  }
  for (const auto& [key, target] : desired) {
    if (active_.count(key)) continue;
    auto f = std::make_unique<PortForward>(
        env_, key, target, [this](const PortForward& changed) { OnForwardChange(changed); });
    PortForward* raw = f.get();
    active_.emplace(key, std::move(f));
    raw->Start();
  }
}

void PortForwarder::OnForwardChange(const PortForward& forward) {
  if (on_change_) on_change_(forward.Info());
  if (forward.state() != cove::v1::FORWARD_STATE_CLOSED || reap_posted_) return;
  // Not from inside the forward's own call stack.
  reap_posted_ = true;
  std::weak_ptr<bool> alive = alive_;
  env_.loop.Post([this, alive]() {
    if (!alive.expired()) Reap();
  });
}

void PortForwarder::Reap() {
  reap_posted_ = false;
  std::erase_if(closing_, [](const std::unique_ptr<PortForward>& f) {
    return f->state() == cove::v1::FORWARD_STATE_CLOSED;
  });
}

void PortForwarder::CloseAll() {
  std::vector<cove::v1::Forward> gone;
  for (auto& [key, f] : active_) gone.push_back(f->Info());
  for (auto& f : closing_) {
    if (f->state() != cove::v1::FORWARD_STATE_CLOSED) gone.push_back(f->Info());
  }
  active_.clear();
  closing_.clear();
  listeners_.clear();
  for (cove::v1::Forward& f : gone) {
    f.set_route(cove::v1::FORWARD_ROUTE_UNSPECIFIED);
    f.set_state(cove::v1::FORWARD_STATE_CLOSED);
    f.set_connections(0);
    if (on_change_) on_change_(f);
  }
}

std::vector<cove::v1::Forward> PortForwarder::List() const {
  std::vector<std::pair<ForwardKey, cove::v1::Forward>> all;
  for (const auto& [key, f] : active_) all.emplace_back(key, f->Info());
  for (const auto& f : closing_) {
    if (f->state() != cove::v1::FORWARD_STATE_CLOSED) all.emplace_back(f->key(), f->Info());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<cove::v1::Forward> out;
  for (auto& [key, f] : all) out.push_back(std::move(f));
  return out;
}

}  // namespace cove::daemon
