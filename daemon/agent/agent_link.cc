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
                    }),
      retry_(loop),
      watchdog_(loop) {}

AgentLink::~AgentLink() { Stop(); }

void AgentLink::Start() {
  running_ = true;
  backoff_ms_ = 50;
  Connect();
}

void AgentLink::Stop() {
  running_ = false;
  ready_ = false;
  retry_.Stop();
  watchdog_.Stop();
  stream_.Close();
}

void AgentLink::Connect() {
  if (!running_) return;
  decoder_ = link::FrameDecoder();
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
        if (!ready_) SendHostHello();
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
  SendControl(msg);
}

bool AgentLink::SendControl(const cove::agent::v1::HostToGuest& msg) {
  link::Frame frame;
  frame.type = link::FrameType::kControl;
  frame.stream_id = 0;
  if (!msg.SerializeToString(&frame.payload)) return false;
  return stream_.Write(link::EncodeFrame(frame));
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
    if (frame->type == link::FrameType::kControl && frame->stream_id == 0) {
      OnControl(frame->payload);
    }
    // Byte streams (exec, forwards) come with the next protocol step.
  }
}

void AgentLink::OnControl(const std::string& payload) {
  cove::agent::v1::GuestToHost msg;
  if (!msg.ParseFromString(payload)) {
    spdlog::warn("{}: unparseable control message from the agent ({} bytes)", name_,
                 payload.size());
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
        SendHostHello();
        return;
      }
      if (msg.hello().protocol_version() != kProtocolVersion) {
        spdlog::warn("{}: agent speaks protocol {}, coved {}", name_,
                     msg.hello().protocol_version(), kProtocolVersion);
      }
      ready_ = true;
      retry_.Stop();
      if (callbacks_.on_hello) callbacks_.on_hello(msg.hello());
      break;
    case cove::agent::v1::GuestToHost::kHeartbeat:
      if (ready_ && callbacks_.on_heartbeat) callbacks_.on_heartbeat(msg.heartbeat());
      break;
    case cove::agent::v1::GuestToHost::kShutdownAck:
      if (callbacks_.on_shutdown_ack) callbacks_.on_shutdown_ack();
      break;
    default:
      break;
  }
}

void AgentLink::Drop(const std::string& why) {
  const bool was_ready = ready_;
  ready_ = false;
  watchdog_.Stop();
  if (!running_) return;
  if (was_ready && callbacks_.on_lost) callbacks_.on_lost(why);
  retry_.Start(backoff_ms_, [this]() { Connect(); });
  backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
}

}  // namespace cove::daemon
