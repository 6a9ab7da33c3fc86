#include "daemon/agent/agent_link.h"

#include <chrono>
#include <random>

#include "common/version.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

constexpr uint32_t kProtocolVersion = 1;
constexpr uint64_t kHelloResendMs = 1000;
constexpr uint64_t kMaxBackoffMs = 1000;

uint64_t NewSessionId() {
  static std::mt19937_64 rng(std::random_device{}());
  uint64_t id = 0;
  while (id == 0) id = rng();
  return id;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

AgentLink::AgentLink(EventLoop& loop, std::string name, std::string socket_path,
                     Callbacks callbacks)
    : loop_(loop),
      name_(std::move(name)),
      socket_path_(std::move(socket_path)),
      callbacks_(std::move(callbacks)),
      stream_(loop, UnixStream::Callbacks{
                        .on_connect =
                            [this](int status) {
                              if (status == 0) {
                                OnConnected();
                              } else {
                                Drop("connect failed");
                              }
                            },
                        .on_data = [this](std::string_view b) { OnData(b); },
                        .on_close = [this](int) { Drop("agent socket closed"); },
                        .on_written = [this]() { Pump(); },
                    }),
      mux_(std::make_unique<link::StreamMux>(link::StreamMux::Side::kHost, MuxCallbacks())),
      retry_(loop),
      watchdog_(loop),
      pump_(loop) {}

AgentLink::~AgentLink() {
  running_ = false;
  Stop();
  FinishRefresh(0);
}

link::StreamMux::Callbacks AgentLink::MuxCallbacks() {
  return link::StreamMux::Callbacks{
      .on_open =
          [this](uint32_t id, std::string payload) {
            cove::agent::v1::StreamOpen what;
            std::optional<StreamCallbacks> accepted;
            if (what.ParseFromString(payload)) {
              if (auto it = open_handlers_.find(what.target_case()); it != open_handlers_.end()) {
                accepted = it->second(id, what);
              }
            }
            if (!accepted) {
              mux_->Reset(id, "refused by the host");
              return;
            }
            handlers_[id] = std::make_shared<StreamCallbacks>(std::move(*accepted));
          },
      .on_data =
          [this](uint32_t id, std::string_view data) {
            if (auto h = Handler(id); h && h->on_data) {
              h->on_data(data);
            } else {
              mux_->Consumed(id, data.size());
            }
          },
      .on_close_write =
          [this](uint32_t id) {
            if (auto h = Handler(id); h && h->on_close_write) h->on_close_write();
          },
      .on_reset =
          [this](uint32_t id, const std::string& reason) {
            auto h = Handler(id);
            handlers_.erase(id);
            if (h && h->on_reset) h->on_reset(reason);
          },
      .on_writable =
          [this](uint32_t id) {
            if (auto h = Handler(id); h && h->on_writable) h->on_writable();
          },
      .on_output = [this]() { SchedulePump(); },
  };
}

std::shared_ptr<StreamCallbacks> AgentLink::Handler(uint32_t id) const {
  auto it = handlers_.find(id);
  return it == handlers_.end() ? nullptr : it->second;
}

void AgentLink::SchedulePump() {
  if (pump_scheduled_) return;
  pump_scheduled_ = true;
  // Not right away: on_output fires inside StreamMux calls, and taking its
  // output there would re-enter it. Once per loop turn also batches frames.
  pump_.Start(0, [this]() {
    pump_scheduled_ = false;
    Pump();
  });
}

void AgentLink::Pump() {
  while (stream_.connected() && stream_.queued() < kMaxInFlight && mux_->HasOutput()) {
    std::string out = mux_->TakeOutput(256 * 1024);
    if (out.empty()) break;
    if (!stream_.Write(std::move(out))) {
      stream_.Close();
      Drop("agent socket write failed");
      return;
    }
  }
}

uint32_t AgentLink::OpenStream(const cove::agent::v1::StreamOpen& what, StreamCallbacks callbacks) {
  if (!ready_) return 0;
  const uint32_t id = mux_->Open(what.SerializeAsString());
  if (id != 0) handlers_[id] = std::make_shared<StreamCallbacks>(std::move(callbacks));
  return id;
}

bool AgentLink::WriteStream(uint32_t id, std::string_view data) { return mux_->Write(id, data); }

size_t AgentLink::StreamWritable(uint32_t id) const { return mux_->WritableBytes(id); }

void AgentLink::CloseStreamWrite(uint32_t id) { mux_->CloseWrite(id); }

void AgentLink::ResetStream(uint32_t id, const std::string& reason) {
  handlers_.erase(id);
  mux_->Reset(id, reason);
}

void AgentLink::ConsumeStream(uint32_t id, size_t n) { mux_->Consumed(id, n); }

void AgentLink::Start() {
  running_ = true;
  backoff_ms_ = 50;
  Connect();
}

void AgentLink::Stop() {
  const bool was_running = running_;
  running_ = false;
  retry_.Stop();
  pump_.Stop();
  pump_scheduled_ = false;
  stream_.Close();
  if (was_running) Drop("the machine is stopping");
  ready_ = false;
  watchdog_.Stop();
}

void AgentLink::Connect() {
  if (!running_) return;
  decoder_ = link::FrameDecoder();
  mux_ = std::make_unique<link::StreamMux>(link::StreamMux::Side::kHost, MuxCallbacks());
  stream_.Connect(socket_path_);
}

void AgentLink::OnConnected() {
  backoff_ms_ = 50;
  session_id_ = NewSessionId();
  SendHostHello();
  // Until the agent answers (it may not have opened its port yet), say it
  // again every second.
  retry_.Start(
      kHelloResendMs,
      [this]() {
        // Not while the last one still waits to go out: a guest that does
        // not read must not make coved queue hellos without end.
        if (!ready_ && !mux_->HasOutput()) SendHostHello();
      },
      kHelloResendMs);
}

void AgentLink::SendHostHello() {
  cove::agent::v1::HostToGuest msg;
  auto* hello = msg.mutable_host_hello();
  hello->set_protocol_version(kProtocolVersion);
  hello->set_host_version(kVersion);
  hello->set_session_id(session_id_);
  hello->set_host_time_unix_ms(NowUnixMs());
  for (const std::string& s : wants_.services) hello->add_services(s);
  for (const auto& r : wants_.reverse_sockets) *hello->add_reverse_sockets() = r;
  for (const auto& m : wants_.mounts) *hello->add_mounts() = m;
  hello->set_foreign_binaries(wants_.foreign_binaries);
  mux_->SendControl(msg.SerializeAsString());
}

bool AgentLink::SendControl(const cove::agent::v1::HostToGuest& msg) {
  if (!ready_) return false;
  mux_->SendControl(msg.SerializeAsString());
  return true;
}

void AgentLink::Handle(cove::agent::v1::GuestToHost::MsgCase which, MessageHandler handler) {
  message_handlers_[which] = std::move(handler);
}

void AgentLink::HandleOpen(cove::agent::v1::StreamOpen::TargetCase which, OpenHandler handler) {
  open_handlers_[which] = std::move(handler);
}

void AgentLink::Refresh(uint64_t bound_ms, std::function<void()> done) {
  if (!ready_) {
    loop_.Post(std::move(done));
    return;
  }
  const uint64_t id = next_refresh_id_++;
  cove::agent::v1::HostToGuest msg;
  msg.mutable_refresh()->set_id(id);
  mux_->SendControl(msg.SerializeAsString());
  PendingRefresh& pending = refreshes_[id];
  pending.done = std::move(done);
  pending.bound = std::make_unique<Timer>(loop_);
  pending.bound->Start(bound_ms, [this, id]() { FinishRefresh(id); });
}

void AgentLink::FinishRefresh(uint64_t id) {
  std::vector<std::function<void()>> dones;
  for (auto it = refreshes_.begin(); it != refreshes_.end();) {
    if (id != 0 && it->first != id) {
      ++it;
      continue;
    }
    dones.push_back(std::move(it->second.done));
    it = refreshes_.erase(it);
  }
  for (auto& done : dones) done();
}

bool AgentLink::RequestShutdown() {
  if (!ready_) return false;
  cove::agent::v1::HostToGuest msg;
  msg.mutable_shutdown();
  return SendControl(msg);
}

void AgentLink::OnData(std::string_view bytes) {
  if (!decoder_.Feed(bytes)) {
    spdlog::warn("{}: {}", name_, decoder_.error());
    stream_.Close();
    Drop(decoder_.error());
    return;
  }
  while (auto frame = decoder_.Next()) {
    if (frame->stream_id == 0) {
      if (frame->type == link::FrameType::kControl) OnControl(frame->payload);
      continue;
    }
    if (!ready_) continue;  // streams belong to a greeted session
    if (!mux_->OnFrame(*frame)) {
      spdlog::warn("{}: the agent broke the stream protocol; dropping the link", name_);
      stream_.Close();
      Drop("stream protocol violation");
      return;
    }
  }
}

void AgentLink::OnControl(const std::string& payload) {
  cove::agent::v1::GuestToHost msg;
  if (!msg.ParseFromString(payload)) {
    // A broken or hostile guest: drop the link (the backoff bounds how fast
    // it can fill the log) rather than skip the message.
    spdlog::warn("{}: unparseable control message from the agent ({} bytes); dropping the link",
                 name_, payload.size());
    stream_.Close();
    Drop("unparseable control message");
    return;
  }
  // Any message proves the agent alive.
  watchdog_.Start(kHeartbeatTimeoutMs, [this]() {
    stream_.Close();
    Drop("no heartbeat from the agent for 16 s");
  });
  switch (msg.msg_case()) {
    case cove::agent::v1::GuestToHost::kHello:
      // Unprompted hellos (session 0) mean the agent just (re)started; answer
      // with a HostHello so it echoes our session.
      if (msg.hello().session_id() != session_id_) {
        if (msg.hello().session_id() == 0 && ready_) {
          // The agent restarted under a live connection (it reopened its end
          // of the port): its session and every stream of it are gone.
          spdlog::warn("{}: the guest agent restarted; starting a new session", name_);
          EndSession("the guest agent restarted");
          OnConnected();
          return;
        }
        if (!mux_->HasOutput()) SendHostHello();  // bounded, as in OnConnected
        return;
      }
      if (ready_) return;  // an answer to a resent HostHello
      if (msg.hello().protocol_version() != kProtocolVersion) {
        spdlog::warn("{}: agent speaks protocol {}, coved {}", name_,
                     msg.hello().protocol_version(), kProtocolVersion);
      }
      ready_ = true;
      retry_.Stop();
      {
        // Fresh now, unlike the HostHellos that may have queued up.
        cove::agent::v1::HostToGuest sync;
        sync.mutable_clock_sync()->set_host_time_unix_ms(NowUnixMs());
        mux_->SendControl(sync.SerializeAsString());
      }
      if (callbacks_.on_hello) callbacks_.on_hello(msg.hello());
      break;
    case cove::agent::v1::GuestToHost::kRefreshed:
      if (msg.refreshed().id() != 0) FinishRefresh(msg.refreshed().id());
      break;
    default:
      // The rest belongs to whoever registered for its kind. A shutdown
      // acknowledgement may come as the session ends, so it needs none.
      if (!ready_ && msg.msg_case() != cove::agent::v1::GuestToHost::kShutdownAck) break;
      if (auto it = message_handlers_.find(msg.msg_case()); it != message_handlers_.end()) {
        it->second(msg);
      }
      break;
  }
}

void AgentLink::EndSession(const std::string& why) {
  const bool was_ready = ready_;
  ready_ = false;
  watchdog_.Stop();
  // Streams do not survive the session; their owners hear on_reset. A fresh
  // mux means a frame of the old session can never touch a new stream.
  auto old = std::move(mux_);
  mux_ = std::make_unique<link::StreamMux>(link::StreamMux::Side::kHost, MuxCallbacks());
  auto handlers = std::move(handlers_);
  handlers_.clear();
  const std::string reason = "the link to the guest agent dropped: " + why;
  for (auto& [id, h] : handlers) {
    if (h->on_reset) h->on_reset(reason);
  }
  (void)old;
  FinishRefresh(0);
  if (running_ && was_ready && callbacks_.on_lost) callbacks_.on_lost(why);
}

void AgentLink::Drop(const std::string& why) {
  EndSession(why);
  if (!running_) return;
  retry_.Start(backoff_ms_, [this]() { Connect(); });
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
}

}  // namespace cove::daemon
