// Fuzzes the host end of the agent link as coved runs it: the real
// cove::daemon::AgentLink (FrameDecoder, GuestToHost parsing, the handshake,
// StreamMux) on a real EventLoop, connected over a real unix socket to this
// harness, which plays a broken or hostile guest. The guest's Listeners go
// through the real port decisions (DesiredForwards) with a machine's rules.
// Input language: agent_link_ops.h. Seeds: agent_link_seeds.cc.
//
// Not covered: Machine itself (it needs a driver, a store and an image) and
// PortForwarder (it binds real host ports); see README.md.
//
// Invariants (a violation traps, so libFuzzer keeps the input):
//  - whatever the guest sends, the heap held once coved's loop is quiet stays
//    under kHeldSlack plus what the harness itself asked coved to send;
//  - a byte stream that is not a valid frame sequence makes coved close the
//    connection;
//  - what coved sends decodes into valid frames; its CONTROL frames are on
//    stream 0 and parse as HostToGuest; it opens odd streams only; its DATA
//    chunks are at most StreamMux::kMaxChunk;
//  - messages reach the machine's callbacks only in a greeted session, and
//    guest streams offered to it have even ids;
//  - every forward DesiredForwards returns is what Decide makes of one
//    listener, on a canonical host address and a port that is not 0, and
//    every static forward is kept;
//  - Stop() leaves no session and no stream.
#include <sanitizer/allocator_interface.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/link_frame.h"
#include "cove/agent/v1/agent.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/forward/port_rules.h"
#include "daemon/loop/event_loop.h"
#include "fmt/format.h"
#include "spdlog/spdlog.h"
#include "tests/fuzz/agent_link_guest.h"
#include "tests/fuzz/agent_link_ops.h"

namespace cove::fuzz {
void WriteAgentLinkSeeds(const std::string& dir);  // agent_link_seeds.cc
}

namespace {

namespace pb = cove::agent::v1;
using namespace cove::fuzz::agent_ops;
using cove::daemon::AgentLink;
using cove::daemon::EventLoop;
using cove::daemon::StreamCallbacks;
using cove::fuzz::AgentSocket;
using cove::fuzz::GuestEnd;
using cove::link::FrameType;

// The link's own buffers (a read buffer, a frame, the control backlog, the
// socket write queue) with room to spare.
constexpr size_t kHeldSlack = 4 << 20;
// Bound what one input may cost in time: it sends at most kMaxSentBytes in
// all (1 MiB of the smallest frames is enough to show a buffer that grows
// with what the guest sends) and makes at most kMaxListeners listeners.
constexpr size_t kMaxSentBytes = 1 << 20;
constexpr size_t kMaxListeners = 30000;
// The harness opens exec streams only while fewer streams than this are open.
constexpr size_t kMaxHostStreams = 4;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// COVE_FUZZ_TRACE=1 prints what the machine hears, to see what a seed reaches.
bool g_trace = false;
template <typename... Args>
void Trace(fmt::format_string<Args...> format, Args&&... args) {
  if (g_trace) fmt::print(stderr, "trace: {}\n", fmt::format(format, std::forward<Args>(args)...));
}

AgentSocket* g_socket = nullptr;  // for the whole process

// A machine with port rules and static forwards, as `cove set` accepts them.
cove::v1::MachineSpec PortSpec() {
  cove::v1::MachineSpec spec;
  auto* ignore = spec.add_port_rules();
  ignore->set_guest_port_start(22);
  ignore->set_ignore(true);
  auto* range = spec.add_port_rules();
  range->set_proto(cove::v1::PROTO_TCP);
  range->set_guest_ip("0.0.0.0");
  range->set_guest_port_start(8000);
  range->set_guest_port_end(8099);
  range->set_host_ip("::1");
  range->set_host_port_start(18000);
  auto* exact = spec.add_port_rules();
  exact->set_proto(cove::v1::PROTO_UDP);
  exact->set_guest_ip("192.168.5.15");
  exact->set_host_ip("0.0.0.0");
  auto* fixed = spec.add_static_forwards();
  fixed->set_proto(cove::v1::PROTO_TCP);
  fixed->set_host_port(2222);
  fixed->set_guest_port(22);
  auto* shadowed = spec.add_static_forwards();
  shadowed->set_proto(cove::v1::PROTO_TCP);
  shadowed->set_host_ip("127.0.0.1");
  shadowed->set_host_port(8080);
  shadowed->set_guest_port(8080);
  Check(cove::daemon::CheckPortSettings(spec).ok());
  return spec;
}

// One run: coved's link, the guest end of its socket, and what a machine
// would do with the link's callbacks.
class Harness {
 public:
  Harness() : spec_(PortSpec()), guest_(loop_) {
    link_ = std::make_unique<AgentLink>(loop_, "fuzz", g_socket->path(), MachineCallbacks());
    RegisterHandlers(*link_);
    pb::ReverseSocket docker;
    docker.set_name("docker");
    docker.set_guest_path("/run/docker.sock");
    link_->Configure({.services = {"containerd", "buildkitd"}, .reverse_sockets = {docker}});
    link_->Start();
  }

  ~Harness() {
    guest_.Close();
    link_.reset();
    g_socket->DropPending();
  }

  bool Connect() { return guest_.Accept(*g_socket); }

  void Run(const uint8_t* data, size_t size) {
    in_ = data;
    left_ = size;
    baseline_ = __sanitizer_get_current_allocated_bytes();
    while (left_ > 0) {
      Step();
      guest_.Settle();
      // A stream that is not a valid frame sequence ends the connection.
      if (guest_.sent_invalid()) Check(guest_.CovedClosed());
      const size_t held = __sanitizer_get_current_allocated_bytes();
      Trace("op done: held {} KiB, coved closed: {}",
            (static_cast<int64_t>(held) - static_cast<int64_t>(baseline_)) / 1024,
            guest_.CovedClosed());
      Check(held < baseline_ + kHeldSlack + written_);
    }
    link_->Stop();
    Check(!link_->ready());
    Check(link_->stream_count() == 0);
    Check(losts_ <= hellos_);
  }

 private:
  uint8_t U8() {
    if (left_ == 0) return 0;
    --left_;
    return *in_++;
  }
  uint16_t U16() {
    const uint16_t hi = U8();
    return static_cast<uint16_t>(hi << 8 | U8());
  }
  std::string_view Bytes() {
    const size_t n = std::min<size_t>(U16(), left_);
    std::string_view b(reinterpret_cast<const char*>(in_), n);
    in_ += n;
    left_ -= n;
    return b;
  }

  void Step() {
    const uint8_t op = U8() % kNumOps;
    std::string wire;
    switch (op) {
      case kRaw:
        wire = Bytes();
        break;
      case kControl:
        cove::link::EncodeFrame(FrameType::kControl, 0, Bytes(), wire);
        break;
      case kHello: {
        const uint8_t session = U8() % kNumHelloSessions;
        pb::GuestToHost msg;
        auto* hello = msg.mutable_hello();
        hello->set_protocol_version(U8());
        hello->set_session_id(session == kEcho    ? guest_.session()
                              : session == kStale ? guest_.session() + 1
                                                  : 0);
        cove::link::EncodeFrame(FrameType::kControl, 0, msg.SerializeAsString(), wire);
        break;
      }
      case kFrame: {
        const uint8_t type = U8() % 8;
        const uint8_t id = U8();
        const std::string_view payload = Bytes();
        wire = FrameHeader(type, id, static_cast<uint32_t>(payload.size())).append(payload);
        break;
      }
      case kListeners: {
        // Up to 20000 in a set: past the frame limit. Each costs the machine
        // (and this harness) time.
        size_t count = std::min<size_t>(U16() % 20001, kMaxListeners - listeners_made_);
        if (guest_.sent() >= kMaxSentBytes) count = 0;
        listeners_made_ += count;
        const std::string payload = ListenersPayload(static_cast<uint16_t>(count), U8());
        wire = FrameHeader(0, 0, static_cast<uint32_t>(payload.size())).append(payload);
        break;
      }
      case kHost:
        HostStep();
        return;
      case kGuest:
        GuestStep();
        return;
      case kRepeat: {
        const size_t budget = kMaxSentBytes - std::min(kMaxSentBytes, guest_.sent());
        const size_t times = std::min<size_t>(size_t{1} << (U8() % 17),
                                              last_wire_.empty() ? 0 : budget / last_wire_.size());
        std::string repeated;
        repeated.reserve(times * last_wire_.size());
        for (size_t i = 0; i < times; ++i) repeated += last_wire_;
        guest_.Send(repeated);
        return;
      }
    }
    guest_.Send(wire);
    last_wire_ = std::move(wire);
  }

  // An open stream picked by `a`, or `a` itself when none is open.
  uint32_t Pick(uint8_t a) const {
    std::vector<uint32_t> ids;
    for (const auto& [id, echo] : streams_) ids.push_back(id);
    return ids.empty() ? a : ids[a % ids.size()];
  }

  void HostStep() {
    const uint8_t op = U8() % kNumHostOps;
    const uint32_t id = Pick(U8());
    const uint8_t b = U8();
    switch (op) {
      case kOpenExec: {
        if (streams_.size() >= kMaxHostStreams) break;
        pb::StreamOpen what;
        what.mutable_exec()->add_argv("true");
        auto opened = std::make_shared<uint32_t>(0);
        *opened = link_->OpenStream(what, Callbacks(opened, false));
        Check(*opened == 0 || (*opened % 2 == 1 && link_->ready()));
        if (*opened != 0) streams_[*opened] = false;
        break;
      }
      case kWrite:
        Write(id, std::string(size_t{b} * 1024, 'h'));
        break;
      case kCloseWrite:
        link_->CloseStreamWrite(id);
        break;
      case kReset:
        link_->ResetStream(id, "fuzz");
        streams_.erase(id);
        break;
      case kShutdown: {
        bool sent;
        if (b % 2 == 1) {
          sent = link_->RequestShutdown();
        } else {
          pb::HostToGuest msg;
          msg.mutable_exec_resize()->set_stream_id(id);
          sent = link_->SendControl(msg);
        }
        Check(sent == link_->ready());
        break;
      }
      case kForget:
        link_->ForgetStream(id);
        streams_.erase(id);
        break;
      case kConsume:
        link_->ConsumeStream(id, size_t{b} * 1024);
        break;
    }
  }

  void GuestStep() {
    switch (U8() % kNumGuestOps) {
      case kToggleReading:
        guest_.set_reading(!guest_.reading());
        break;
      case kClose:
        guest_.Close();
        break;
      case kReconnect:
        if (reconnected_) break;
        reconnected_ = true;
        Check(Connect());  // coved retries, within its backoff
        break;
    }
  }

  void Write(uint32_t id, const std::string& data) {
    if (link_->WriteStream(id, data)) written_ += data.size();
  }

  // What a stream's owner does: a reverse connection passes the bytes on at
  // once and its peer answers them (echo); an exec's output waits for its
  // client, which reads when the input says so (HOST kConsume).
  StreamCallbacks Callbacks(std::shared_ptr<uint32_t> id, bool echo) {
    return StreamCallbacks{
        .on_data =
            [this, id, echo](std::string_view data) {
              Trace("stream {}: {} bytes", *id, data.size());
              if (!echo) return;
              Write(*id, std::string(data));
              link_->ConsumeStream(*id, data.size());
            },
        .on_close_write =
            [this, id, echo]() {
              if (echo) link_->CloseStreamWrite(*id);
            },
        .on_reset =
            [this, id](const std::string& why) {
              Trace("stream {} reset: {}", *id, why);
              streams_.erase(*id);
            },
        .on_writable = []() {},
    };
  }

  AgentLink::Callbacks MachineCallbacks() {
    return AgentLink::Callbacks{
        .on_hello =
            [this](const pb::Hello& hello) {
              Trace("hello, protocol {}", hello.protocol_version());
              Check(link_->ready());
              ++hellos_;
            },
        .on_lost =
            [this](const std::string& why) {
              Trace("lost: {}", why);
              ++losts_;
            },
    };
  }

  // The guest's messages and streams, as the machine's components register
  // for them.
  void RegisterHandlers(AgentLink& link) {
    link.Handle(pb::GuestToHost::kHeartbeat, [this](const pb::GuestToHost& msg) {
      Trace("heartbeat {}", msg.heartbeat().seq());
      Check(link_->ready());
    });
    link.Handle(pb::GuestToHost::kShutdownAck,
                [](const pb::GuestToHost&) { Trace("shutdown ack"); });
    link.Handle(pb::GuestToHost::kExecExited, [this](const pb::GuestToHost& msg) {
      Trace("exec {} exited {}", msg.exec_exited().stream_id(), msg.exec_exited().exit_code());
      Check(link_->ready());
    });
    link.Handle(pb::GuestToHost::kServiceStatus, [this](const pb::GuestToHost& msg) {
      Trace("service {} state {}", msg.service_status().name(),
            static_cast<int>(msg.service_status().state()));
      Check(link_->ready());
    });
    link.Handle(pb::GuestToHost::kListeners,
                [this](const pb::GuestToHost& msg) { OnListeners(msg.listeners()); });
    auto open = [this](uint32_t id, const pb::StreamOpen& what) -> std::optional<StreamCallbacks> {
      Trace("guest opens stream {}: {} bytes", id, what.ByteSizeLong());
      Check(id % 2 == 0 && link_->ready());
      const bool stderr_of_exec =
          what.has_exec_stderr_of() && streams_.count(what.exec_stderr_of()) != 0;
      const bool reverse = what.has_reverse() && what.reverse() == "docker";
      if (!stderr_of_exec && !reverse) return std::nullopt;
      streams_[id] = reverse;
      return Callbacks(std::make_shared<uint32_t>(id), reverse);
    };
    link.HandleOpen(pb::StreamOpen::kExecStderrOf, open);
    link.HandleOpen(pb::StreamOpen::kReverse, open);
  }

  // What PortForwarder::Reconcile asks for, checked.
  void OnListeners(const pb::Listeners& set) {
    Check(link_->ready());
    const std::vector<pb::Listener> listeners(set.listeners().begin(), set.listeners().end());
    const auto desired = cove::daemon::DesiredForwards(spec_, listeners);
    int statics = 0;
    for (const auto& [key, target] : desired) {
      Check(key.host_port != 0);
      Check(cove::daemon::CanonicalIp(key.host_ip) == key.host_ip);
      if (target.is_static) {
        ++statics;
        continue;
      }
      Check(target.guest_port != 0);
      const auto again =
          cove::daemon::Decide(spec_.port_rules(), key.proto, target.guest_ip, target.guest_port);
      Check(again && *again == key);
    }
    Check(statics == spec_.static_forwards_size());
    Check(desired.size() <= statics + listeners.size());
    Trace("{} listeners: {} forwards", listeners.size(), desired.size());
  }

  EventLoop loop_;
  const cove::v1::MachineSpec spec_;
  GuestEnd guest_;
  std::unique_ptr<AgentLink> link_;
  bool reconnected_ = false;
  size_t listeners_made_ = 0;
  std::string last_wire_;
  std::map<uint32_t, bool> streams_;  // open streams the machine handles; true: echoes
  size_t written_ = 0;                // bytes the harness made coved queue for the guest
  size_t baseline_ = 0;
  int hellos_ = 0;
  int losts_ = 0;
  const uint8_t* in_ = nullptr;
  size_t left_ = 0;
};

void DeleteSocket() { delete g_socket; }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("COVE_FUZZ_MAKE_SEEDS")) {
    cove::fuzz::WriteAgentLinkSeeds(dir);
    std::exit(0);
  }
  g_trace = std::getenv("COVE_FUZZ_TRACE") != nullptr;
  spdlog::set_level(g_trace ? spdlog::level::debug : spdlog::level::off);
  g_socket = new AgentSocket;
  std::atexit(DeleteSocket);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness harness;
  Check(harness.Connect());
  harness.Run(data, size);
  return 0;
}
