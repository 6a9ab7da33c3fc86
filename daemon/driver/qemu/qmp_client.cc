#include "daemon/driver/qemu/qmp_client.h"

#include <uv.h>

#include "absl/strings/str_cat.h"

namespace cove::daemon::qemu {

QmpClient::QmpClient(EventLoop& loop, Callbacks callbacks)
    : callbacks_(std::move(callbacks)),
      stream_(loop,
              UnixStream::Callbacks{
                  .on_connect =
                      [this](int status) {
                        if (status != 0) {
                          FailAll(absl::StrCat("cannot connect to QMP: ", uv_strerror(status)));
                        }
                      },
                  .on_data = [this](std::string_view b) { OnData(b); },
                  .on_close =
                      [this](int status) {
                        FailAll(status == UV_EOF
                                    ? "QMP connection closed"
                                    : absl::StrCat("QMP connection broke: ", uv_strerror(status)));
                      },
              }) {}

void QmpClient::Connect(const std::string& socket_path) {
  parser_ = QmpStream();
  ready_ = false;
  stream_.Connect(socket_path);
}

void QmpClient::Close() {
  stream_.Close();
  ready_ = false;
  // Replies still owed get an error, but on_closed is for unexpected closes.
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, reply] : pending) {
    if (reply) reply(absl::CancelledError("QMP connection closed"), nullptr);
  }
}

void QmpClient::Execute(const std::string& command, nlohmann::json args, Reply reply) {
  if (!ready_ && command != "qmp_capabilities") {
    if (reply) reply(absl::UnavailableError("QMP is not ready"), nullptr);
    return;
  }
  const uint64_t id = next_id_++;
  nlohmann::json msg = {{"execute", command}, {"id", id}};
  if (!args.is_null()) msg["arguments"] = std::move(args);
  if (!stream_.Write(msg.dump() + "\r\n")) {
    if (reply) reply(absl::UnavailableError("QMP is not connected"), nullptr);
    return;
  }
  if (reply) pending_[id] = std::move(reply);
}

void QmpClient::OnData(std::string_view bytes) {
  for (const nlohmann::json& msg : parser_.Feed(bytes)) OnMessage(msg);
  if (parser_.failed()) {
    stream_.Close();
    FailAll(parser_.error());
  }
}

void QmpClient::OnMessage(const nlohmann::json& msg) {
  if (msg.contains("QMP")) {
    // Greeting: leave negotiation mode.
    Execute("qmp_capabilities", nullptr, [this](absl::Status st, const nlohmann::json&) {
      if (!st.ok()) return;
      ready_ = true;
      if (callbacks_.on_ready) callbacks_.on_ready();
    });
    return;
  }
  if (msg.contains("event")) {
    // Types are checked, not assumed: nothing from qemu may throw on the loop.
    const auto& event = msg["event"];
    auto data = msg.find("data");
    if (event.is_string() && callbacks_.on_event) {
      callbacks_.on_event(event.get<std::string>(), data != msg.end() && data->is_object()
                                                        ? *data
                                                        : nlohmann::json::object());
    }
    return;
  }
  if (!msg.contains("id") || !msg["id"].is_number_unsigned()) return;
  auto it = pending_.find(msg["id"].get<uint64_t>());
  if (it == pending_.end()) return;
  Reply reply = std::move(it->second);
  pending_.erase(it);
  if (msg.contains("error")) {
    const auto& error = msg["error"];
    std::string desc = error.dump();
    if (error.is_object() && error.contains("desc") && error["desc"].is_string()) {
      desc = error["desc"].get<std::string>();
    }
    reply(absl::InternalError(absl::StrCat("QMP error: ", desc)), nullptr);
  } else {
    auto ret = msg.find("return");
    reply(absl::OkStatus(), ret != msg.end() ? *ret : nlohmann::json::object());
  }
}

void QmpClient::FailAll(const std::string& why) {
  ready_ = false;
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, reply] : pending) {
    if (reply) reply(absl::UnavailableError(why), nullptr);
  }
  if (callbacks_.on_closed) callbacks_.on_closed(why);
}

}  // namespace cove::daemon::qemu
