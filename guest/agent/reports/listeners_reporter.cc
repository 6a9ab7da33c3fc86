#include "guest/agent/reports/listeners_reporter.h"

#include "guest/agent/core/sysinfo.h"

namespace cove::agent {
namespace {

int64_t NowMs() { return ClockMs(CLOCK_MONOTONIC); }

}  // namespace

ListenersReporter::ListenersReporter() { watcher_.OpenProcessEvents(); }

void ListenersReporter::Prepare(Host& host, PollSet& poll) {
  if (!host.greeted()) return;
  // Process events: they only make the listener polling and the watched
  // directory scans come sooner.
  if (const int fd = watcher_.PollFd(NowMs()); fd >= 0) {
    poll.Add(fd, POLLIN, [this](short revents) {
      if (revents & POLLIN) watcher_.OnProcessEvents(NowMs());
    });
  }
  poll.WakeBy(watcher_.next_due_ms());
}

void ListenersReporter::Tick(Host& host) {
  if (host.greeted()) Report(host, false);
}

void ListenersReporter::OnSessionStart(int64_t greeted_ms, Host& host) { Report(host, true); }

void ListenersReporter::OnRefresh(Host& host) { Report(host, true); }

void ListenersReporter::Report(Host& host, bool force) {
  if (!watcher_.Refresh(NowMs(), force) && !force) return;
  v1::GuestToHost msg;
  v1::Listeners* out = msg.mutable_listeners();
  out->set_generation(watcher_.generation());
  for (const ListenerInfo& l : watcher_.listeners()) {
    v1::Listener* item = out->add_listeners();
    item->set_proto(l.proto == ListenerInfo::Proto::kTcp ? v1::PROTO_TCP : v1::PROTO_UDP);
    item->set_address(l.address);
    item->set_port(l.port);
    item->set_v6only(l.v6only);
  }
  host.Send(msg);
}

}  // namespace cove::agent
