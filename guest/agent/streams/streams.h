// The byte streams of one link session: what each OPEN asks for (an exec, a
// connection to a guest socket or port, a reverse forward), the relays that
// carry their bytes, and the exec processes behind them.
//
// A session's streams die with it: destroying the table kills every exec
// process group it started and closes every relay, which is what the host
// expects after a reconnect (docs/agent-link.md, "Reconnect").
//
// Threading: the agent's one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/stream_mux.h"
#include "cove/agent/v1/agent.pb.h"
#include "guest/agent/core/reporter.h"
#include "guest/agent/core/unique_fd.h"
#include "guest/agent/streams/relay.h"

namespace cove::agent {

class StreamTable final : public Reporter {
 public:
  explicit StreamTable(link::StreamMux& mux) : mux_(mux) {}
  ~StreamTable() override;

  // StreamMux callbacks.
  void OnOpen(uint32_t id, const std::string& payload);
  void OnData(uint32_t id, std::string_view data);
  void OnCloseWrite(uint32_t id);
  void OnReset(uint32_t id);

  // Control messages for execs.
  void Resize(const v1::ExecResize& resize);
  void Signal(const v1::ExecSignal& signal);

  // Listens on each reverse socket not yet listened on, and stops listening
  // on ones no longer listed.
  void SetReverseSockets(const std::vector<v1::ReverseSocket>& sockets);

  // A child exited; false if it is not one of our execs.
  bool OnChildExit(pid_t pid, int wait_status);

  // The relays' and reverse sockets' fds, each with its handler.
  void Prepare(Host& host, PollSet& poll) override;
  // Reports finished execs and drops finished relays.
  void Tick(Host& host) override;

  size_t relay_count() const { return relays_.size(); }

 private:
  struct Exec {
    pid_t pid = -1;
    uint32_t stdout_id = 0;
    uint32_t stderr_id = 0;  // 0 with a tty
    bool exited = false;
    int wait_status = 0;
  };
  struct Listener {
    std::string name;
    std::string path;
    UniqueFd fd;
  };
  void StartExec(uint32_t id, const v1::ExecStart& start);
  void Connect(uint32_t id, int domain, const void* addr, size_t addr_len, const std::string& what);
  // A port forward's connection (TCP) or session (UDP) to a guest address.
  void ConnectNet(uint32_t id, const v1::NetConnect& target);
  void Accept(Listener& listener);
  Relay* Find(uint32_t id);
  Exec* FindExec(uint32_t stream_id);

  link::StreamMux& mux_;
  std::map<uint32_t, std::unique_ptr<Relay>> relays_;
  std::vector<Exec> execs_;
  std::vector<Listener> listeners_;
};

}  // namespace cove::agent
