// One command running in a guest for an Exec call: the loop-side end that
// owns its agent link streams (stdin+stdout, stderr) and hands output to the
// gRPC handler thread through a channel.
//
// Flow control end to end: output is consumed on the link only when the
// handler thread reports it written to the client (Consumed), so a client
// that reads slowly slows the command, never coved. Stdin waits in a queue
// bounded by kMaxStdinQueued; the handler thread checks stdin_queued()
// before it reads more from the client.
//
// The exit is reported once the agent said ExecExited and both output
// streams ended, so no output is lost behind it.
//
// Threading: loop thread, except the channel and stdin_queued().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "cove/v1/machines.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/loop/channel.h"

namespace cove::daemon {

class ExecSession {
 public:
  static constexpr size_t kMaxStdinQueued = 4 << 20;

  // Output for the handler thread: responses, closed after the exit.
  using Output = Channel<cove::v1::ExecResponse>;

  ExecSession(AgentLink& link, std::shared_ptr<Output> output);
  ~ExecSession();

  // Opens the exec stream. False (with `error`) when the link has no session.
  bool Begin(const cove::v1::ExecStart& start, std::string* error);
  uint32_t stream_id() const { return stdout_id_; }

  // Handler requests, posted to the loop.
  void Stdin(std::string data);
  void StdinEof();
  void Resize(uint32_t rows, uint32_t cols);
  void Signal(int32_t signal);
  // The handler wrote `n` bytes of the stream's output to the client.
  void Consumed(bool stderr_stream, size_t n);
  // The client is gone: kill the command.
  void Cancel();

  // From the link, routed by the machine.
  void OnExited(const cove::agent::v1::ExecExited& exited);
  StreamCallbacks StderrCallbacks(uint32_t id);

  bool finished() const { return finished_; }
  size_t stdin_queued() const { return stdin_queued_.load(); }

 private:
  StreamCallbacks OutputCallbacks(bool stderr_stream);
  void FlushStdin();
  void MaybeFinish();
  void Fail(const std::string& why);

  AgentLink& link_;
  std::shared_ptr<Output> output_;
  uint32_t stdout_id_ = 0;
  uint32_t stderr_id_ = 0;
  bool tty_ = false;
  bool stdout_done_ = false;
  bool stderr_done_ = false;
  bool exited_ = false;
  cove::v1::ExecExit exit_;
  std::string stdin_buf_;
  bool stdin_eof_ = false;
  std::atomic<size_t> stdin_queued_{0};
  bool finished_ = false;
};

}  // namespace cove::daemon
