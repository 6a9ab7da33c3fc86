// A QMP client on the event loop: connects to qemu's QMP socket, negotiates
// capabilities, runs commands and reports asynchronous events. Loop thread
// only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "daemon/driver/qemu/qmp_stream.h"
#include "daemon/loop/unix_stream.h"

namespace cove::daemon::qemu {

class QmpClient {
 public:
  struct Callbacks {
    // Capabilities negotiated: commands may be sent.
    std::function<void()> on_ready;
    // An asynchronous event, e.g. "SHUTDOWN" with its data.
    std::function<void(const std::string& event, const nlohmann::json& data)> on_event;
    // The connection is gone (qemu exited or the socket broke).
    std::function<void(const std::string& why)> on_closed;
  };
  using Reply = std::function<void(absl::Status, const nlohmann::json& result)>;

  QmpClient(EventLoop& loop, Callbacks callbacks);

  void Connect(const std::string& socket_path);
  // Sends {"execute": command, "arguments": args}. `reply` runs once with the
  // result or an error (also when the connection closes first).
  void Execute(const std::string& command, nlohmann::json args = nullptr, Reply reply = nullptr);
  bool ready() const { return ready_; }
  void Close();

 private:
  void OnData(std::string_view bytes);
  void OnMessage(const nlohmann::json& msg);
  void FailAll(const std::string& why);

  Callbacks callbacks_;
  UnixStream stream_;
  QmpStream parser_;
  bool ready_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Reply> pending_;
};

}  // namespace cove::daemon::qemu
