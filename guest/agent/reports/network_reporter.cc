#include "guest/agent/reports/network_reporter.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "guest/agent/core/log.h"
#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

}  // namespace

NetworkReporter::NetworkReporter() {
  netlink_ = UniqueFd(socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE));
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_LINK;
  if (!netlink_.valid() ||
      bind(netlink_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    Log("network: no rtnetlink (%s); the network is reported at connects and refreshes only",
        std::strerror(errno));
    netlink_.reset();
  }
}

void NetworkReporter::Prepare(Host& host, PollSet& poll) {
  // Drained even while no host listens, so the socket's buffer never fills;
  // a session's start reports what is true then.
  if (netlink_.valid()) {
    poll.Add(netlink_.get(), POLLIN, [this](short revents) {
      // POLLERR: the socket's error (ENOBUFS) waits for a recv to clear it.
      if (revents & (POLLIN | POLLERR)) Drain();
    });
  }
  if (host.greeted() && due_ms_) poll.WakeBy(*due_ms_);
}

void NetworkReporter::Drain() {
  char buf[8192];
  bool any = false;
  for (;;) {
    const ssize_t n = recv(netlink_.get(), buf, sizeof buf, 0);
    if (n > 0) {
      any = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // ENOBUFS: the kernel dropped changes, which only means something
    // changed; reading on clears it.
    if (n < 0 && errno == ENOBUFS) {
      any = true;
      continue;
    }
    break;  // EAGAIN: drained; anything else: try again next round
  }
  if (any && !due_ms_) due_ms_ = NowMs() + kSettleMs;
}

void NetworkReporter::Tick(Host& host) {
  if (!host.greeted() || !due_ms_ || NowMs() < *due_ms_) return;
  due_ms_.reset();
  Report(host, false);
}

void NetworkReporter::OnSessionStart(int64_t greeted_ms, Host& host) {
  due_ms_.reset();
  Report(host, true);
}

void NetworkReporter::OnRefresh(Host& host) { Report(host, true); }

void NetworkReporter::Report(Host& host, bool force) {
  NetworkFacts facts = ReadNetwork();
  if (!force && sent_ == facts) return;
  v1::GuestToHost msg;
  v1::GuestNetwork* out = msg.mutable_network();
  for (const NetAddress& a : facts.addresses) {
    auto* item = out->add_addresses();
    item->set_interface(a.interface);
    item->set_address(a.address);
    item->set_prefix_length(a.prefix_length);
  }
  out->set_gateway(facts.gateway);
  out->set_gateway_interface(facts.gateway_interface);
  for (const std::string& ns : facts.nameservers) out->add_nameservers(ns);
  host.Send(msg);
  sent_ = std::move(facts);
}

}  // namespace cove::agent
