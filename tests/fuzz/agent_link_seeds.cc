// The seed corpus of agent_link_fuzz (tests/fuzz/corpus/agent_link_fuzz/):
// short guest sessions, valid ones and the usual ways they go wrong, in the
// input language of agent_link_ops.h. Regenerate after changing that
// language:
//
//   COVE_FUZZ_MAKE_SEEDS=tests/fuzz/corpus/agent_link_fuzz build/fuzz/agent_link_fuzz
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/link_frame.h"
#include "cove/agent/v1/agent.pb.h"
#include "tests/fuzz/agent_link_ops.h"

namespace cove::fuzz {
namespace {

namespace pb = cove::agent::v1;
using namespace agent_ops;
using link::FrameType;

constexpr uint8_t kOpen = static_cast<uint8_t>(FrameType::kOpen);
constexpr uint8_t kData = static_cast<uint8_t>(FrameType::kData);
constexpr uint8_t kCloseWriteFrame = static_cast<uint8_t>(FrameType::kCloseWrite);
constexpr uint8_t kResetFrame = static_cast<uint8_t>(FrameType::kReset);
constexpr uint8_t kCredit = static_cast<uint8_t>(FrameType::kCredit);

std::string Heartbeat(uint64_t seq) {
  pb::GuestToHost msg;
  auto* hb = msg.mutable_heartbeat();
  hb->set_seq(seq);
  hb->set_uptime_ms(5000 * seq);
  hb->set_mem_total_bytes(2ull << 30);
  hb->set_mem_available_bytes(1ull << 30);
  hb->set_load1_x100(42);
  return msg.SerializeAsString();
}

std::string Listeners(std::vector<std::pair<std::string, uint32_t>> tcp, uint64_t generation) {
  pb::GuestToHost msg;
  auto* set = msg.mutable_listeners();
  set->set_generation(generation);
  for (const auto& [address, port] : tcp) {
    auto* l = set->add_listeners();
    l->set_proto(pb::PROTO_TCP);
    l->set_address(address);
    l->set_port(port);
  }
  return msg.SerializeAsString();
}

std::string Service(const std::string& name, pb::ServiceStatus::State state, uint32_t pid) {
  pb::GuestToHost msg;
  auto* s = msg.mutable_service_status();
  s->set_name(name);
  s->set_state(state);
  s->set_pid(pid);
  s->set_restarts(state == pb::ServiceStatus::RESTARTING ? 1 : 0);
  s->set_last_exit(state == pb::ServiceStatus::RESTARTING ? "exited 1" : "");
  s->set_log_path("/var/log/" + name + ".log");
  return msg.SerializeAsString();
}

std::string ExecExited(uint32_t stream_id, int32_t code) {
  pb::GuestToHost msg;
  msg.mutable_exec_exited()->set_stream_id(stream_id);
  msg.mutable_exec_exited()->set_exit_code(code);
  return msg.SerializeAsString();
}

std::string ShutdownAck() {
  pb::GuestToHost msg;
  msg.mutable_shutdown_ack();
  return msg.SerializeAsString();
}

std::string Open(void (*fill)(pb::StreamOpen&)) {
  pb::StreamOpen what;
  fill(what);
  return what.SerializeAsString();
}

std::string Credit(uint32_t n) {
  return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
          static_cast<char>(n)};
}

std::string Frame(FrameType type, uint32_t id, const std::string& payload) {
  return link::EncodeFrame(link::Frame{type, id, payload});
}

}  // namespace

void WriteAgentLinkSeeds(const std::string& dir) {
  const std::string reverse = Open([](pb::StreamOpen& o) { o.set_reverse("docker"); });
  const std::string unknown = Open([](pb::StreamOpen& o) { o.set_reverse("nope"); });
  const std::string stderr_of_1 = Open([](pb::StreamOpen& o) { o.set_exec_stderr_of(1); });
  const std::string hello_frame = [] {
    pb::GuestToHost msg;
    msg.mutable_hello()->set_protocol_version(1);
    return Frame(FrameType::kControl, 0, msg.SerializeAsString());
  }();

  const std::vector<std::pair<std::string, OpWriter>> seeds = {
      {"hello", OpWriter().Hello(kEcho)},
      {"hello_heartbeats", OpWriter().Hello(kEcho).Control(Heartbeat(1)).Control(Heartbeat(2))},
      {"hello_old_protocol", OpWriter().Hello(kEcho, 0).Control(Heartbeat(1))},
      {"heartbeat_before_hello", OpWriter().Control(Heartbeat(1)).Hello(kEcho)},
      {"listeners", OpWriter()
                        .Hello(kEcho)
                        .Control(Listeners({{"0.0.0.0", 80}, {"::", 80}, {"127.0.0.1", 8080}}, 1))
                        .Control(Listeners({{"::1", 22}, {"0.0.0.0", 8001}}, 2))
                        .Listeners(50, 7)},
      {"listeners_over_frame_limit", OpWriter().Hello(kEcho).Listeners(20000, 3)},
      {"service_status", OpWriter()
                             .Hello(kEcho)
                             .Control(Service("containerd", pb::ServiceStatus::STARTING, 0))
                             .Control(Service("containerd", pb::ServiceStatus::READY, 310))
                             .Control(Service("buildkitd", pb::ServiceStatus::RESTARTING, 0))},
      {"exec_stderr_exit", OpWriter()
                               .Hello(kEcho)
                               .Host(kOpenExec)
                               .Frame(kOpen, 2, stderr_of_1)
                               .Frame(kData, 1, "out\n")
                               .Frame(kData, 2, "err\n")
                               .Frame(kCloseWriteFrame, 1, "")
                               .Frame(kCloseWriteFrame, 2, "")
                               .Control(ExecExited(1, 0))},
      {"exec_input_credit", OpWriter()
                                .Hello(kEcho)
                                .Host(kOpenExec)
                                .Host(kWrite, 0, 200)
                                .Frame(kCredit, 1, Credit(512 * 1024))
                                .Host(kWrite, 0, 255)
                                .Host(kCloseWrite)
                                .Host(kShutdown, 0, 0)},
      {"reverse_stream", OpWriter()
                             .Hello(kEcho)
                             .Frame(kOpen, 2, reverse)
                             .Frame(kData, 2, "GET /_ping HTTP/1.1\r\n\r\n")
                             .Frame(kCloseWriteFrame, 2, "")
                             .Frame(kResetFrame, 2, "bye")},
      {"refused_open", OpWriter().Hello(kEcho).Frame(kOpen, 4, unknown).Frame(kData, 4, "x")},
      {"open_odd_id", OpWriter().Hello(kEcho).Frame(kOpen, 3, reverse)},
      {"data_over_window", OpWriter()
                               .Hello(kEcho)
                               .Host(kOpenExec)
                               .Frame(kData, 1, std::string(1000, 'd'))
                               .Host(kConsume, 0, 1)
                               .Frame(kData, 1, std::string(1000, 'd'))
                               .Repeat(10)
                               .Repeat(5)},
      {"agent_restart", OpWriter()
                            .Hello(kEcho)
                            .Frame(kOpen, 2, reverse)
                            .Hello(kUnprompted)
                            .Hello(kEcho)
                            .Control(Heartbeat(1))},
      {"stale_hello", OpWriter().Hello(kStale).Hello(kEcho).Hello(kStale)},
      {"shutdown", OpWriter().Hello(kEcho).Host(kShutdown, 0, 1).Control(ShutdownAck())},
      {"unparseable_control",
       OpWriter().Hello(kEcho).Control("\xff\xff\xff").Control(Heartbeat(3))},
      {"bad_magic",
       OpWriter().Hello(kEcho).Raw(std::string("XV\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00", 12))},
      {"bad_type", OpWriter().Hello(kEcho).Frame(7, 0, "")},
      {"bad_credit", OpWriter().Hello(kEcho).Frame(kCredit, 1, "abc")},
      {"over_limit", OpWriter().Raw(std::string("CV\x01\x00\x00\x00\x00\x00\x00\x04\x00\x01", 12))},
      {"split_hello", OpWriter()
                          .Raw(hello_frame.substr(0, 5))
                          .Raw(hello_frame.substr(5, 9))
                          .Raw(hello_frame.substr(14))},
      {"guest_not_reading", OpWriter()
                                .Hello(kEcho)
                                .Guest(kToggleReading)
                                .Host(kOpenExec)
                                .Host(kWrite, 0, 255)
                                .Frame(kCredit, 1, Credit(1 << 20))
                                .Control(Heartbeat(1))
                                .Repeat(7)
                                .Guest(kToggleReading)},
      {"guest_closes", OpWriter().Hello(kEcho).Frame(kOpen, 2, reverse).Guest(kClose)},
      {"reconnect", OpWriter().Hello(kEcho).Guest(kReconnect).Hello(kEcho).Control(Heartbeat(1))},
  };
  std::filesystem::create_directories(dir);
  for (const auto& [name, ops] : seeds) {
    std::ofstream(std::filesystem::path(dir) / name, std::ios::binary) << ops.bytes();
  }
}

}  // namespace cove::fuzz
