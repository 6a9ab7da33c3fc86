#include "guest/agent/reports/listeners.h"

#include <arpa/inet.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "guest/agent/core/log.h"

namespace cove::agent {
namespace {

std::string Literal(int family, const uint32_t* addr) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, addr, text, sizeof(text));
  return text;
}

}  // namespace

bool ListenerWatcher::Dump(int family, ListenerInfo::Proto proto, std::vector<ListenerInfo>& out,
                           std::string& error) {
  if (!sock_.valid()) {
    sock_ = UniqueFd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!sock_.valid()) {
      error = std::string("netlink socket: ") + std::strerror(errno);
      return false;
    }
  }
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  static uint32_t sequence = 0;
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  message.header.nlmsg_seq = ++sequence;
  message.request.sdiag_family = static_cast<uint8_t>(family);
  message.request.sdiag_protocol = proto == ListenerInfo::Proto::kTcp ? IPPROTO_TCP : IPPROTO_UDP;
  // A bound, unconnected UDP socket is in TCP_CLOSE as far as inet_diag goes.
  message.request.idiag_states =
      proto == ListenerInfo::Proto::kTcp ? (1u << TCP_LISTEN) : (1u << TCP_CLOSE);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(sock_.get(), &message, sizeof(message), 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof(kernel)) < 0) {
    error = std::string("sock_diag request: ") + std::strerror(errno);
    sock_.reset();
    return false;
  }
  alignas(nlmsghdr) static char buffer[32 * 1024];  // the agent is single-threaded
  while (true) {
    const ssize_t n = recv(sock_.get(), buffer, sizeof(buffer), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = std::string("sock_diag reply: ") + std::strerror(errno);
      sock_.reset();
      return false;
    }
    if (n == 0) return true;
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != sequence) continue;  // a late reply to an earlier dump
      if (h->nlmsg_type == NLMSG_DONE) return true;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        error = std::string("sock_diag: ") + std::strerror(-e->error);
        return false;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) continue;  // truncated
      const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      const uint16_t port = ntohs(m->id.idiag_sport);
      if (port == 0) continue;
      // A UDP socket with a peer is a client, not a server.
      if (proto == ListenerInfo::Proto::kUdp && m->id.idiag_dport != 0) continue;
      // IPv6 sockets carry INET_DIAG_SKV6ONLY whether asked for or not.
      bool v6only = false;
      int attrs = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
      for (auto* a = reinterpret_cast<rtattr*>(const_cast<inet_diag_msg*>(m) + 1); RTA_OK(a, attrs);
           a = RTA_NEXT(a, attrs)) {
        if (a->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(a) >= 1) {
          v6only = *static_cast<const uint8_t*>(RTA_DATA(a)) != 0;
        }
      }
      out.push_back(ListenerInfo{proto, Literal(m->idiag_family, m->id.idiag_src), port, v6only});
    }
  }
}

bool ListenerWatcher::OpenProcessEvents() {
  UniqueFd fd(socket(PF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = CN_IDX_PROC;
  auto unavailable = [] {
    Log("no process events (%s); listing listening sockets every %d ms", std::strerror(errno),
        kFastPollMs);
    return false;
  };
  if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    return unavailable();
  }
  // nlmsghdr, cn_msg, then the operation: subscribe.
  alignas(nlmsghdr) char buf[NLMSG_SPACE(sizeof(cn_msg) + sizeof(uint32_t))] = {};
  auto* header = reinterpret_cast<nlmsghdr*>(buf);
  header->nlmsg_len = NLMSG_LENGTH(sizeof(cn_msg) + sizeof(uint32_t));
  header->nlmsg_type = NLMSG_DONE;
  auto* msg = static_cast<cn_msg*>(NLMSG_DATA(header));
  msg->id.idx = CN_IDX_PROC;
  msg->id.val = CN_VAL_PROC;
  msg->len = sizeof(uint32_t);
  const uint32_t op = PROC_CN_MCAST_LISTEN;
  std::memcpy(msg->data, &op, sizeof(op));
  if (send(fd.get(), buf, header->nlmsg_len, 0) < 0) return unavailable();
  events_ = std::move(fd);
  return true;
}

int ListenerWatcher::PollFd(int64_t now_ms) const {
  return events_.valid() && !Fast(now_ms) ? events_.get() : -1;
}

bool ListenerWatcher::DrainProcessEvents() {
  if (!events_.valid()) return false;
  alignas(nlmsghdr) static char buf[16 * 1024];  // the agent is single-threaded
  bool any = false;
  // ENOBUFS (events dropped while nobody read) is as good as an event.
  while (recv(events_.get(), buf, sizeof(buf), 0) > 0 || errno == ENOBUFS || errno == EINTR) {
    any = true;
  }
  return any;
}

void ListenerWatcher::OnProcessEvents(int64_t now_ms) {
  DrainProcessEvents();
  last_event_ms_ = now_ms;
  fast_until_ms_ = now_ms + kFastWindowMs;
  next_due_ms_ = std::min(next_due_ms_, now_ms + kFastPollMs);
}

bool ListenerWatcher::Refresh(int64_t now_ms, bool force) {
  if (!force && now_ms < next_due_ms_) return false;
  // Not polled while fast: drained here, and events seen here keep it fast.
  if (Fast(now_ms) && DrainProcessEvents()) {
    last_event_ms_ = now_ms;
    fast_until_ms_ = now_ms + kFastWindowMs;
  }
  next_due_ms_ = now_ms + (Fast(now_ms) ? kFastPollMs : kIdlePollMs);
  std::vector<ListenerInfo> found;
  for (auto proto : {ListenerInfo::Proto::kTcp, ListenerInfo::Proto::kUdp}) {
    bool& failed = proto == ListenerInfo::Proto::kTcp ? tcp_failed_ : udp_failed_;
    if (failed) continue;
    for (int family : {AF_INET, AF_INET6}) {
      std::string error;
      if (!Dump(family, proto, found, error)) {
        // A kernel without tcp_diag or udp_diag: that protocol is never
        // forwarded automatically, said once. (IPv6 turned off shows as an
        // empty dump, not an error.)
        Log("cannot list %s listening sockets (%s); automatic %s forwarding is off",
            proto == ListenerInfo::Proto::kTcp ? "TCP" : "UDP", error.c_str(),
            proto == ListenerInfo::Proto::kTcp ? "TCP" : "UDP");
        failed = true;
        std::erase_if(found, [proto](const ListenerInfo& l) { return l.proto == proto; });
        break;
      }
    }
  }
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  if (found == listeners_) return false;
  listeners_ = std::move(found);
  generation_++;
  return true;
}

}  // namespace cove::agent
