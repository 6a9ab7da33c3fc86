#include "daemon/machine/exec_session.h"

#include <algorithm>

namespace cove::daemon {

ExecSession::ExecSession(AgentLink& link, std::shared_ptr<Output> output)
    : link_(link), output_(std::move(output)) {}

ExecSession::~ExecSession() {
  // A session that never began (no agent session) has told nobody anything.
  if (!finished_ && stdout_id_ != 0) Fail("coved is dropping the session");
}

bool ExecSession::Begin(const cove::v1::ExecStart& start, std::string* error) {
  cove::agent::v1::StreamOpen open;
  auto* exec = open.mutable_exec();
  for (const auto& a : start.argv()) exec->add_argv(a);
  for (const auto& e : start.env()) exec->add_env(e);
  exec->set_cwd(start.workdir());
  exec->set_tty(start.tty());
  exec->set_rows(start.size().rows());
  exec->set_cols(start.size().cols());
  exec->set_term(start.term());
  tty_ = start.tty();
  // A tty has no separate stderr stream.
  stderr_done_ = tty_;
  stdout_id_ = link_.OpenStream(open, OutputCallbacks(false));
  if (stdout_id_ == 0) {
    *error = "the guest agent is not connected right now; try again in a moment";
    return false;
  }
  return true;
}

StreamCallbacks ExecSession::OutputCallbacks(bool stderr_stream) {
  return StreamCallbacks{
      .on_data =
          [this, stderr_stream](std::string_view data) {
            cove::v1::ExecResponse r;
            if (stderr_stream) {
              r.set_stderr(std::string(data));
            } else {
              r.set_stdout(std::string(data));
            }
            // Bounded by the stream's credit window, so never dropped.
            output_->Push(std::move(r), /*final=*/true);
          },
      .on_close_write =
          [this, stderr_stream]() {
            (stderr_stream ? stderr_done_ : stdout_done_) = true;
            MaybeFinish();
          },
      .on_reset =
          [this, stderr_stream](const std::string& why) {
            if (stderr_stream) {
              stderr_id_ = 0;
              stderr_done_ = true;
              MaybeFinish();
              return;
            }
            stdout_id_ = 0;
            if (exited_) {
              stdout_done_ = true;
              MaybeFinish();
            } else {
              Fail(why);
            }
          },
      .on_writable = [this]() { FlushStdin(); },
  };
}

StreamCallbacks ExecSession::StderrCallbacks(uint32_t id) {
  stderr_id_ = id;
  return OutputCallbacks(true);
}

void ExecSession::Stdin(std::string data) {
  stdin_queued_ += data.size();
  stdin_buf_.append(data);
  FlushStdin();
}

void ExecSession::StdinEof() {
  stdin_eof_ = true;
  FlushStdin();
}

void ExecSession::FlushStdin() {
  if (stdout_id_ == 0) return;
  while (!stdin_buf_.empty()) {
    const size_t n = std::min(stdin_buf_.size(), link_.StreamWritable(stdout_id_));
    if (n == 0) return;  // on_writable comes back here
    link_.WriteStream(stdout_id_, std::string_view(stdin_buf_).substr(0, n));
    stdin_buf_.erase(0, n);
    stdin_queued_ -= n;
  }
  if (stdin_eof_) link_.CloseStreamWrite(stdout_id_);
}

void ExecSession::Resize(uint32_t rows, uint32_t cols) {
  if (!tty_ || stdout_id_ == 0) return;
  cove::agent::v1::HostToGuest msg;
  auto* r = msg.mutable_exec_resize();
  r->set_stream_id(stdout_id_);
  r->set_rows(rows);
  r->set_cols(cols);
  link_.SendControl(msg);
}

void ExecSession::Signal(int32_t signal) {
  if (stdout_id_ == 0) return;
  cove::agent::v1::HostToGuest msg;
  auto* s = msg.mutable_exec_signal();
  s->set_stream_id(stdout_id_);
  s->set_signal(signal);
  link_.SendControl(msg);
}

void ExecSession::Consumed(bool stderr_stream, size_t n) {
  const uint32_t id = stderr_stream ? stderr_id_ : stdout_id_;
  if (id != 0) link_.ConsumeStream(id, n);
}

void ExecSession::Cancel() {
  if (finished_) return;
  // Resetting the stream makes the agent kill the process group.
  finished_ = true;
  if (stdout_id_ != 0) link_.ResetStream(stdout_id_, "the client went away");
  if (stderr_id_ != 0) link_.ResetStream(stderr_id_, "the client went away");
  stdout_id_ = stderr_id_ = 0;
  output_->Close();
}

void ExecSession::OnExited(const cove::agent::v1::ExecExited& exited) {
  exited_ = true;
  // The agent opens an exec's stderr stream before it can report the exit
  // (the OPEN precedes ExecExited on the link), so none by now means none.
  if (stderr_id_ == 0) stderr_done_ = true;
  exit_.set_exit_code(exited.exit_code());
  exit_.set_signal(exited.signal());
  exit_.set_error(exited.error());
  MaybeFinish();
}

void ExecSession::MaybeFinish() {
  if (finished_ || !exited_ || !stdout_done_ || !stderr_done_) return;
  finished_ = true;
  // Done both ways: release the streams (the agent drops them too).
  if (stdout_id_ != 0) link_.ResetStream(stdout_id_, "exec finished");
  if (stderr_id_ != 0) link_.ForgetStream(stderr_id_);
  stdout_id_ = stderr_id_ = 0;
  cove::v1::ExecResponse r;
  *r.mutable_exit() = exit_;
  output_->Push(std::move(r), /*final=*/true);
  output_->Close();
}

void ExecSession::Fail(const std::string& why) {
  if (finished_) return;
  finished_ = true;
  if (stdout_id_ != 0) link_.ResetStream(stdout_id_, why);
  if (stderr_id_ != 0) link_.ResetStream(stderr_id_, why);
  stdout_id_ = stderr_id_ = 0;
  cove::v1::ExecResponse r;
  r.mutable_exit()->set_exit_code(-1);
  r.mutable_exit()->set_error(why);
  output_->Push(std::move(r), /*final=*/true);
  output_->Close();
}

}  // namespace cove::daemon
