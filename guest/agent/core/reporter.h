// The parts of the agent's loop behind one interface, so the loop (Agent)
// iterates a list instead of wiring each part by hand: the facts the guest
// reports (heartbeat, listeners, watched directories, emulation, OOM kills)
// and the parts that keep their own fds and deadlines (the services, a
// session's streams).
//
// Adding a fact the guest reports takes its message in agent.proto, one
// Reporter, and its line in Agent::Reporters (core/agent.cc). The order of
// that list is the order in which the parts act within a round, at the start
// of a session and on a Refresh, and so the order of their messages.
//
// Threading: the agent's loop thread only. A hook may block for a while (a
// scan, asking dockerd a name), so each reads the clock when it acts rather
// than being handed a time taken before the hooks ahead of it ran.
#pragma once

#include <cstdint>

#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/core/poll_set.h"

namespace cove::agent {

// The host end of the link as a reporter sees it: a session, or nothing while
// the agent waits to reconnect.
class Host {
 public:
  virtual ~Host() = default;
  // A connection to the host is open (its HostHello may not have come yet).
  virtual bool connected() const = 0;
  // A host said HostHello on this connection: reports go out.
  virtual bool greeted() const = 0;
  // Queues a control message for the host; only while greeted().
  virtual void Send(const v1::GuestToHost& message) = 0;
};

class Reporter {
 public:
  virtual ~Reporter() = default;

  // Before each poll(): adds the fds to wait on, each with the handler that
  // runs when it is ready, and says when this next has something to do
  // (PollSet::WakeBy). `host` outlives the round.
  virtual void Prepare(Host& host, PollSet& poll) {}
  // Once a round, after the handlers ran: what is due now.
  virtual void Tick(Host& host) {}
  // The first HostHello of a connection, once the host's wants (mounts,
  // services) are applied: everything the host's view is rebuilt from.
  // `greeted_ms` is when that HostHello arrived (CLOCK_MONOTONIC).
  virtual void OnSessionStart(int64_t greeted_ms, Host& host) {}
  // A host's Refresh in a greeted session: fresh reports, before Refreshed.
  virtual void OnRefresh(Host& host) {}
};

}  // namespace cove::agent
