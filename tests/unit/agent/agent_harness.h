// Test harness for the real cove-agent binary: the host side of the agent
// link on a unix socket (what coved does over the QEMU chardev) and the agent
// child process. Every wait takes a deadline and reports what it last saw.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/link_frame.h"
#include "cove/agent/v1/agent.pb.h"

namespace cove::agent::test {

int64_t MonotonicMs();
int64_t UnixMs();

// Listens on a unix socket in a fresh temporary directory; accepts one agent
// connection at a time.
class HostPeer {
 public:
  HostPeer();
  ~HostPeer();
  HostPeer(const HostPeer&) = delete;
  HostPeer& operator=(const HostPeer&) = delete;

  const std::string& socket_path() const { return socket_path_; }

  // Waits up to `timeout_ms` for the agent to connect; false on timeout.
  bool Accept(int timeout_ms);
  // Closes the current connection, as coved going away would.
  void CloseConnection();
  bool connected() const { return conn_fd_ >= 0; }

  void Send(const v1::HostToGuest& message);
  void SendFrame(const link::Frame& frame);
  void SendRaw(const std::string& bytes);

  // Next frame within `timeout_ms`; nullopt on timeout, EOF or a bad stream
  // (see last_error()).
  std::optional<link::Frame> ReadFrame(int timeout_ms);
  // Next CONTROL message on stream 0, skipping nothing else: any other frame
  // fails the read.
  std::optional<v1::GuestToHost> ReadControl(int timeout_ms);
  // Reads control messages until one of `kind` arrives, skipping others
  // (e.g. heartbeats).
  std::optional<v1::GuestToHost> ReadUntil(v1::GuestToHost::MsgCase kind, int timeout_ms);

  const std::string& last_error() const { return last_error_; }

 private:
  std::string dir_;
  std::string socket_path_;
  int listen_fd_ = -1;
  int conn_fd_ = -1;
  link::FrameDecoder decoder_;
  std::string last_error_;
};

// The cove-agent binary as a child process. The destructor kills it if it is
// still running, so a failed test leaves nothing behind.
class AgentProcess {
 public:
  explicit AgentProcess(const std::vector<std::string>& args);
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The exit status (as from waitpid) once the process ended within
  // `timeout_ms`; nullopt while it still runs.
  std::optional<int> WaitExit(int timeout_ms);
  // utime + stime of the running process, in clock ticks.
  long CpuTicks() const;
  void Signal(int sig);

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// Path of the cove-agent binary under test.
std::string AgentBinary();

}  // namespace cove::agent::test
