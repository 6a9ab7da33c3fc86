#include "daemon/forward/port_forward.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace cove::daemon {
namespace {

bool IsV6(const std::string& ip) { return ip.find(':') != std::string::npos; }

int ParseAddr(const std::string& ip, uint16_t port, sockaddr_storage* out) {
  if (IsV6(ip)) return uv_ip6_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(out));
  return uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(out));
}

// One receive buffer per loop thread for every UDP forward: a datagram is
// framed into its stream (copied) before the next receive.
constexpr size_t kDatagramMax = 65535;
char* DatagramBuffer() {
  thread_local std::vector<char> buffer(kDatagramMax);
  return buffer.data();
}

}  // namespace

struct PortForward::TcpListener {
  uv_tcp_t tcp{};
  PortForward* owner = nullptr;
};

struct PortForward::UdpSocket {
  uv_udp_t udp{};
  PortForward* owner = nullptr;
};

PortForward::PortForward(Env env, ForwardKey key, ForwardTarget target,
                         std::function<void(const PortForward&)> on_change)
    : env_(std::move(env)),
      key_(std::move(key)),
      target_(std::move(target)),
      on_change_(std::move(on_change)),
      udp_sessions_(env_.loop, GuestTarget(), env_.link,
                    [this](const uv_udp_t* socket) {
                      return std::any_of(udp_.begin(), udp_.end(), [socket](const UdpSocket* s) {
                        return &s->udp == socket;
                      });
                    }),
      retry_timer_(env_.loop) {}

PortForward::~PortForward() {
  *alive_ = false;
  on_change_ = nullptr;
  udp_sessions_.EndAll("the forward closed");
  CloseSockets();
  conns_.reset();
  if (claimed_) env_.registry.Release(key_, env_.machine);
  if (lane_held_) env_.lanes->Release(target_.guest_port);
}

bool PortForward::CanUseLane() const {
  return key_.proto == cove::v1::PROTO_TCP && env_.lanes != nullptr && target_.network_reachable;
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
  f.set_static_forward(target_.is_static);
  f.set_connections(static_cast<uint32_t>(
      key_.proto == cove::v1::PROTO_UDP ? udp_sessions_.size() : (conns_ ? conns_->size() : 0)));
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
          self->owner->udp_sessions_.OnDatagram(&self->udp, from, buf->base,
                                                static_cast<size_t>(n));
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
  udp_sessions_.EndAll("the guest listener is gone");
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

}  // namespace cove::daemon
