// cove.v1.Machines: Exec and Logs, the calls that stream bytes to and from a
// guest (see machines_service.h).
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "daemon/api/machines_service.h"
#include "daemon/api/status.h"

namespace cove::daemon::api {
namespace {

constexpr size_t kMaxArgvBytes = 128 * 1024;
constexpr size_t kMaxStdinMessage = 1 << 20;
constexpr uint32_t kDefaultTailLines = 200;
constexpr std::chrono::seconds kWaitForAgent(10);

absl::Status ValidateExecStart(const cove::v1::ExecStart& start) {
  if (auto st = ValidateName(start.name()); !st.ok()) {
    return OrReason(st, cove::v1::INVALID_NAME, {{"field", "name"}});
  }
  if (start.argv().empty() || start.argv(0).empty()) {
    return absl::InvalidArgumentError("no command given: pass the command after `--`");
  }
  size_t bytes = 0;
  for (const auto& a : start.argv()) bytes += a.size() + 1;
  for (const auto& e : start.env()) {
    bytes += e.size() + 1;
    if (e.find('=') == std::string::npos || e[0] == '=') {
      return absl::InvalidArgumentError(
          absl::StrCat("environment entry '", e, "' is not KEY=VALUE"));
    }
  }
  if (bytes > kMaxArgvBytes) {
    return absl::InvalidArgumentError(absl::StrCat("command line and environment are ", bytes,
                                                   " bytes; the limit is ", kMaxArgvBytes));
  }
  if (!start.workdir().empty() && start.workdir()[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("working directory '", start.workdir(), "' must be an absolute guest path"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MachinesService::StartedExec> MachinesService::BeginExec(
    const cove::v1::ExecStart& start) {
  if (auto st = ValidateExecStart(start); !st.ok()) return st;
  StartedExec started;
  // Output never overflows: each stream has at most one credit window
  // unconsumed, so the bound here is only a backstop.
  started.output = std::make_shared<ExecSession::Output>(1 << 16);
  // While the agent reconnects (it restarted, coved re-adopted the machine)
  // the start waits a bounded time instead of failing at once.
  const auto deadline = std::chrono::steady_clock::now() + kWaitForAgent;
  for (;;) {
    auto session = loop_.Call<absl::StatusOr<std::shared_ptr<ExecSession>>>(
        [this, start, output = started.output]() -> absl::StatusOr<std::shared_ptr<ExecSession>> {
          auto m = manager_.Find(start.name());
          if (!m.ok()) return m.status();
          return (*m)->StartExec(start, output);
        });
    if (!session.ok()) return session.status();
    if (session->ok()) {
      started.session = **session;
      return started;
    }
    if (!absl::IsUnavailable(session->status()) || std::chrono::steady_clock::now() > deadline) {
      return session->status();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::optional<cove::v1::ExecExit> MachinesService::PumpExec(
    grpc::ServerContext* ctx, const StartedExec& started,
    const std::function<bool(const cove::v1::ExecResponse&)>& write) {
  std::weak_ptr<ExecSession> weak = started.session;
  auto cancel = [this, weak]() {
    loop_.Post([weak]() {
      if (auto s = weak.lock()) s->Cancel();
    });
  };
  for (;;) {
    auto item = started.output->Pop(std::chrono::milliseconds(500));
    if (!item.has_value()) {
      if (started.output->closed()) return std::nullopt;  // cancelled
      if (ctx->IsCancelled()) {
        cancel();
        return std::nullopt;
      }
      continue;
    }
    if (item->has_exit()) return item->exit();
    const bool is_stderr = item->has_stderr();
    const size_t n = is_stderr ? item->stderr().size() : item->stdout().size();
    if (!write(*item)) {
      cancel();
      return std::nullopt;
    }
    loop_.Post([weak, is_stderr, n]() {
      if (auto s = weak.lock()) s->Consumed(is_stderr, n);
    });
  }
}

grpc::Status MachinesService::Exec(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<cove::v1::ExecResponse, cove::v1::ExecRequest>* stream) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  cove::v1::ExecRequest first;
  if (!stream->Read(&first)) return grpc::Status::CANCELLED;
  if (!first.has_start()) {
    return Error(cove::v1::INVALID_REQUEST, grpc::StatusCode::INVALID_ARGUMENT,
                 "the first ExecRequest must be `start` (machine and command)");
  }
  auto started = BeginExec(first.start());
  if (!started.ok()) return ToGrpc(started.status());
  std::weak_ptr<ExecSession> weak = started->session;

  // Requests are read on their own thread while this one writes output.
  std::atomic<bool> stop_reading{false};
  std::atomic<bool> reader_done{false};
  std::thread reader([&]() {
    struct Done {
      std::atomic<bool>& flag;
      ~Done() { flag = true; }
    } done{reader_done};
    cove::v1::ExecRequest req;
    while (!stop_reading && stream->Read(&req)) {
      switch (req.msg_case()) {
        case cove::v1::ExecRequest::kStdin: {
          if (req.stdin().size() > kMaxStdinMessage) return;
          // Stdin the guest has not taken yet stays bounded: wait here, which
          // in turn stops reading from the client.
          while (!stop_reading && started->session->stdin_queued() > ExecSession::kMaxStdinQueued) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
          loop_.Post([weak, data = req.stdin()]() mutable {
            if (auto s = weak.lock()) s->Stdin(std::move(data));
          });
          break;
        }
        case cove::v1::ExecRequest::kStdinEof:
          loop_.Post([weak]() {
            if (auto s = weak.lock()) s->StdinEof();
          });
          break;
        case cove::v1::ExecRequest::kResize:
          loop_.Post([weak, rows = req.resize().rows(), cols = req.resize().cols()]() {
            if (auto s = weak.lock()) s->Resize(rows, cols);
          });
          break;
        case cove::v1::ExecRequest::kSignal:
          loop_.Post([weak, sig = req.signal()]() {
            if (auto s = weak.lock()) s->Signal(sig);
          });
          break;
        default:
          break;
      }
    }
  });

  auto exit = PumpExec(ctx, *started,
                       [stream](const cove::v1::ExecResponse& r) { return stream->Write(r); });
  grpc::Status result = grpc::Status::OK;
  if (exit.has_value()) {
    cove::v1::ExecResponse last;
    *last.mutable_exit() = *exit;
    stream->Write(last);
  } else {
    result = grpc::Status(grpc::StatusCode::CANCELLED, "the exec was cancelled");
  }
  // A client that never half-closes would leave the reader blocked in Read:
  // give it a moment, then end the call, which wakes it.
  stop_reading = true;
  for (int i = 0; i < 20 && !reader_done; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!reader_done) ctx->TryCancel();
  reader.join();
  // The session must die on the loop thread.
  loop_.Post([s = std::move(started->session)]() {});
  return result;
}

grpc::Status MachinesService::Logs(grpc::ServerContext* ctx, const cove::v1::LogsRequest* req,
                                   grpc::ServerWriter<cove::v1::LogsResponse>* writer) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  if (auto st = ValidateName(req->name()); !st.ok()) {
    return ToGrpc(OrReason(st, cove::v1::INVALID_NAME, {{"field", "name"}}));
  }
  const cove::v1::LogSource source = req->source();
  if (source == cove::v1::LOG_SOURCE_UNSPECIFIED || source == cove::v1::LOG_SOURCE_CONSOLE) {
    return ConsoleLogs(ctx, *req, writer);
  }
  const std::string service = source == cove::v1::LOG_SOURCE_CONTAINERD ? "containerd"
                              : source == cove::v1::LOG_SOURCE_DOCKERD  ? "dockerd"
                                                                        : "";
  if (service.empty()) {
    return Error(cove::v1::INVALID_REQUEST, grpc::StatusCode::INVALID_ARGUMENT,
                 absl::StrCat("unknown log source ", static_cast<int>(source),
                              "; choose LOG_SOURCE_CONSOLE, LOG_SOURCE_CONTAINERD or "
                              "LOG_SOURCE_DOCKERD"),
                 {{"field", "source"}});
  }
  const uint32_t lines = req->tail_lines() ? req->tail_lines() : kDefaultTailLines;
  cove::v1::ExecStart start;
  start.set_name(req->name());
  start.add_argv("tail");
  start.add_argv("-n");
  start.add_argv(std::to_string(lines));
  if (req->follow()) start.add_argv("-F");
  start.add_argv("/var/log/cove/" + service + ".log");
  auto started = BeginExec(start);
  if (!started.ok()) return ToGrpc(started.status());
  auto exit = PumpExec(ctx, *started, [writer](const cove::v1::ExecResponse& r) {
    cove::v1::LogsResponse out;
    out.set_data(r.has_stderr() ? r.stderr() : r.stdout());
    return writer->Write(out);
  });
  loop_.Post([s = std::move(started->session)]() {});
  if (!exit.has_value()) return grpc::Status::CANCELLED;
  if (exit->exit_code() != 0) {
    return Error(cove::v1::HOST_ERROR, grpc::StatusCode::FAILED_PRECONDITION,
                 absl::StrCat("reading the ", service, " log in the guest failed (exit ",
                              exit->exit_code(), ") ", exit->error()));
  }
  return grpc::Status::OK;
}

grpc::Status MachinesService::ConsoleLogs(grpc::ServerContext* ctx,
                                          const cove::v1::LogsRequest& req,
                                          grpc::ServerWriter<cove::v1::LogsResponse>* writer) {
  auto got = loop_.Call<absl::StatusOr<cove::v1::Machine>>(
      [this, name = req.name()]() -> absl::StatusOr<cove::v1::Machine> {
        auto m = manager_.Find(name);
        if (!m.ok()) return m.status();
        return (*m)->view();
      });
  if (!got.ok()) return ToGrpc(got.status());
  if (!got->ok()) return ToGrpc(got->status());
  const std::string path = (*got)->paths().serial_log();
  const uint32_t lines = req.tail_lines() ? req.tail_lines() : kDefaultTailLines;

  // The tail: read back from the end until enough newlines are seen.
  std::ifstream in(path, std::ios::binary);
  std::streamoff offset = 0;
  if (in) {
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    const std::streamoff from = std::max<std::streamoff>(0, size - 1024 * 1024);
    std::string tail(static_cast<size_t>(size - from), '\0');
    in.seekg(from);
    in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
    size_t pos = tail.size();
    uint32_t seen = 0;
    if (pos > 0 && tail[pos - 1] == '\n') pos--;
    while (pos > 0) {
      if (tail[pos - 1] == '\n' && ++seen == lines) break;
      pos--;
    }
    cove::v1::LogsResponse out;
    out.set_data(tail.substr(pos));
    if (!out.data().empty() && !writer->Write(out)) return grpc::Status::CANCELLED;
    offset = size;
  }
  if (!req.follow()) return grpc::Status::OK;
  // Follow by polling the size: the console file is written by qemu, and a
  // new boot starts a new file (the old one moves to serial.log.1).
  while (!ctx->IsCancelled()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (st.st_size < offset) offset = 0;
    if (st.st_size == offset) continue;
    std::ifstream f(path, std::ios::binary);
    f.seekg(offset);
    std::string chunk(static_cast<size_t>(std::min<std::streamoff>(st.st_size - offset, 1 << 20)),
                      '\0');
    f.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    chunk.resize(static_cast<size_t>(f.gcount()));
    offset += static_cast<std::streamoff>(chunk.size());
    cove::v1::LogsResponse out;
    out.set_data(std::move(chunk));
    if (!writer->Write(out)) break;
  }
  return grpc::Status::OK;
}

}  // namespace cove::daemon::api
