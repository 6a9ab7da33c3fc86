#include "daemon/forward/udp_sessions.h"

#include <cstring>
#include <utility>
#include <vector>

namespace cove::daemon {
namespace {

std::string PeerKey(const sockaddr* addr) {
  const size_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return std::string(reinterpret_cast<const char*>(addr), len);
}

struct UdpSendReq {
  uv_udp_send_t req{};
  std::string data;
};

}  // namespace

struct UdpSessions::Session {
  sockaddr_storage peer{};
  uv_udp_t* socket = nullptr;
  uint32_t id = 0;
  std::string inbox;  // datagrams from the guest, not yet whole
  uint64_t last_ms = 0;
};

UdpSessions::UdpSessions(EventLoop& loop, cove::agent::v1::StreamOpen target,
                         std::function<AgentLink*()> link,
                         std::function<bool(const uv_udp_t*)> socket_open)
    : target_(std::move(target)),
      link_(std::move(link)),
      socket_open_(std::move(socket_open)),
      idle_timer_(loop) {}

UdpSessions::~UdpSessions() { *alive_ = false; }

void UdpSessions::OnDatagram(uv_udp_t* socket, const sockaddr* from, const char* data, size_t n) {
  AgentLink* link = link_();
  if (link == nullptr || !link->ready()) return;  // no session: dropped, as UDP may
  const std::string peer = PeerKey(from);
  auto it = sessions_.find(peer);
  if (it == sessions_.end()) {
    if (sessions_.size() >= kMaxSessions) {
      auto oldest = sessions_.begin();
      for (auto i = sessions_.begin(); i != sessions_.end(); ++i) {
        if (i->second->last_ms < oldest->second->last_ms) oldest = i;
      }
      End(oldest->first, "too many UDP sessions");
    }
    auto session = std::make_unique<Session>();
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
              if (!alive.expired()) End(peer, "the guest ended the session");
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
    session->id = link->OpenStream(target_, std::move(callbacks));
    if (session->id == 0) return;
    it = sessions_.emplace(peer, std::move(session)).first;
    if (sessions_.size() == 1) {
      idle_timer_.Start(
          kIdleMs / 4, [this]() { Expire(); }, kIdleMs / 4);
    }
  }
  Session& s = *it->second;
  s.last_ms = SteadyNowMs();
  if (link->StreamWritable(s.id) < n + 2) return;  // the guest is behind: dropped
  std::string framed(2 + n, '\0');
  framed[0] = static_cast<char>(n >> 8);
  framed[1] = static_cast<char>(n & 0xff);
  std::memcpy(framed.data() + 2, data, n);
  link->WriteStream(s.id, framed);
}

void UdpSessions::SendToClient(Session& session) {
  size_t used = 0;
  const std::string& in = session.inbox;
  while (in.size() - used >= 2) {
    const auto* p = reinterpret_cast<const unsigned char*>(in.data() + used);
    const size_t n = (size_t{p[0]} << 8) | p[1];
    if (in.size() - used < 2 + n) break;
    // The socket may have closed (PortForward::BeginClose) while the reply
    // travelled.
    if (socket_open_(session.socket)) {
      auto* req = new UdpSendReq;
      req->data.assign(in, used + 2, n);
      req->req.data = req;
      uv_buf_t buf = uv_buf_init(req->data.data(), static_cast<unsigned>(n));
      if (uv_udp_send(
              &req->req, session.socket, &buf, 1, reinterpret_cast<const sockaddr*>(&session.peer),
              [](uv_udp_send_t* r, int) { delete static_cast<UdpSendReq*>(r->data); }) != 0) {
        delete req;
      }
    }
    used += 2 + n;
  }
  session.inbox.erase(0, used);
  session.last_ms = SteadyNowMs();
  if (AgentLink* link = link_(); link != nullptr && used > 0) {
    link->ConsumeStream(session.id, used);
  }
}

void UdpSessions::Expire() {
  const uint64_t now = SteadyNowMs();
  std::vector<std::string> idle;
  for (const auto& [peer, s] : sessions_) {
    if (now - s->last_ms >= kIdleMs) idle.push_back(peer);
  }
  for (const std::string& peer : idle) End(peer, "idle");
  if (sessions_.empty()) idle_timer_.Stop();
}

void UdpSessions::EndAll(const std::string& why) {
  while (!sessions_.empty()) End(sessions_.begin()->first, why);
}

void UdpSessions::End(const std::string& peer, const std::string& why) {
  auto it = sessions_.find(peer);
  if (it == sessions_.end()) return;
  const uint32_t id = it->second->id;
  sessions_.erase(it);
  if (AgentLink* link = link_(); link != nullptr && id != 0) link->ResetStream(id, why);
}

}  // namespace cove::daemon
