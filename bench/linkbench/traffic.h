// The two ends of the benchmark's traffic, both plain blocking sockets on
// threads of their own: a sink server that the relays forward to, and the
// clients that connect through a relay and push or pull the bytes.
//
// The sink listens on two unix sockets: on "in" it reads every connection to
// EOF and counts; on "out" it writes the trial's byte count to every
// connection and then reads it to EOF. A trial ends when the last byte
// arrived at its far end (the sink for uploads, the clients for downloads).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cove::bench {

using Clock = std::chrono::steady_clock;

enum class Direction { kUpload, kDownload };  // client -> sink, sink -> client

class Sink {
 public:
  // Creates `dir`/sink-in.sock and `dir`/sink-out.sock (with `tcp`, two
  // TCP ports on 127.0.0.1 instead, named "tcp:PORT") and serves them until
  // destroyed.
  static absl::StatusOr<std::unique_ptr<Sink>> Start(const std::string& dir, bool tcp = false);
  ~Sink();
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  const std::string& in_path() const { return in_path_; }
  const std::string& out_path() const { return out_path_; }

  // Starts a trial: "out" connections get `bytes` each; results of "in"
  // connections are collected from now on.
  void BeginTrial(uint64_t bytes_per_conn);
  // Waits until `conns` "in" connections reached EOF, at most `timeout`.
  // Returns the total bytes they received and when the last one ended.
  absl::StatusOr<std::pair<uint64_t, Clock::time_point>> AwaitUploads(size_t conns,
                                                                      Clock::duration timeout);

 private:
  Sink() = default;
  void AcceptLoop(int listen_fd, bool send);
  void Receive(int fd);
  void Send(int fd);

  std::string in_path_;
  std::string out_path_;
  int in_fd_ = -1;
  int out_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};  // written once to stop the accept threads
  std::vector<std::thread> acceptors_;
  std::atomic<uint64_t> send_bytes_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;  // guarded by mu_
  size_t done_conns_ = 0;             // guarded by mu_
  uint64_t done_bytes_ = 0;           // guarded by mu_
  Clock::time_point last_done_{};     // guarded by mu_
};

struct TrialResult {
  uint64_t bytes = 0;  // received at the far end, all streams
  double seconds = 0;  // from the clients' start to the last byte at the far end
};

// Runs `streams` clients through `relay_path` (which must lead to the sink's
// in socket for uploads, its out socket for downloads), each moving
// `bytes_per_stream`. Fails if any byte is missing or the trial takes longer
// than `timeout`.
absl::StatusOr<TrialResult> RunTrial(Sink& sink, const std::string& relay_path, Direction direction,
                                     size_t streams, uint64_t bytes_per_stream,
                                     Clock::duration timeout);

// Connects to a unix socket, retrying until `timeout` (a relay that is
// still starting). Returns the connected, blocking fd.
// Connects to an endpoint: a unix socket path, or "tcp:PORT" on 127.0.0.1.
absl::StatusOr<int> ConnectUnix(const std::string& path, Clock::duration timeout);

// "tcp:PORT" -> PORT; 0 for a unix socket path.
int TcpPortOf(const std::string& endpoint);
// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeTcpPort();

}  // namespace cove::bench
