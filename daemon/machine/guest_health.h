// What the guest says about its health, made into the Machine's status and
// events: memory (available, PSI pressure), disk, clock, and OOM kills, each
// kill told with who, which limit, and what to do. The machine drives it
// through its lifecycle hooks like the mounts:
//
//   OnHello       a session began: the guest's uptime, to date kills
//   OnHeartbeat   figures into Machine.guest; sustained pressure is an event;
//                 kills a burst left untold are told once its window is over
//   OnOomKill     a kill into Machine.oom_kills (once each) and an event
//   Clear         the boot is over
//
// Threading: loop thread only. Owned by the Machine.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "cove/agent/v1/agent.pb.h"
#include "cove/v1/machines.pb.h"
#include "daemon/machine/boot_component.h"

namespace cove::daemon {

// What coved keeps of a string a guest sent: a broken or hostile guest
// must not grow machine.json or events without limit.
inline std::string BoundedGuestText(const std::string& s) { return s.substr(0, 256); }

// The API's kill, with its summary and fix, for `machine` (its name and its
// architecture as the guest reports it, "x86_64").
cove::v1::OomKill DescribeOomKill(const cove::agent::v1::OomKill& kill, const std::string& machine,
                                  const std::string& machine_arch);

// Outlives boots (the kills are kept across them); attached to each boot for
// the heartbeats and kills its agent reports.
class GuestHealth : public BootComponent {
 public:
  // Kills kept on the Machine.
  static constexpr int kMaxKills = 16;
  // At most this many kill events (each also writes machine.json) in a
  // window; the kills past it (a fork bomb under a limit) are kept on the
  // Machine and counted in the next event told: the next kill's, or, at the
  // first heartbeat after the window, one of their own.
  static constexpr int kMaxKillEventsPerWindow = 10;
  static constexpr int64_t kKillWindowMs = 10000;
  // Sustained pressure: "some" avg10 at or above this percentage in this
  // many heartbeats in a row; over again below half of it.
  static constexpr double kPressureHighPercent = 20.0;
  static constexpr int kPressureBeats = 2;

  using Publish = std::function<void(cove::v1::EventKind kind, const std::string& message,
                                     const cove::v1::OomKill* kill)>;
  GuestHealth(std::string machine, cove::v1::Machine& record, Publish publish)
      : machine_(std::move(machine)), record_(record), publish_(std::move(publish)) {}

  void OnHello(const cove::agent::v1::Hello& hello, int64_t steady_now_ms);
  void OnHeartbeat(const cove::agent::v1::Heartbeat& beat, int64_t steady_now_ms,
                   int64_t unix_now_ms);
  void OnOomKill(const cove::agent::v1::OomKill& kill, int64_t steady_now_ms, int64_t unix_now_ms);
  void Clear();

  // Heartbeat and OomKill, stamped with the host's clocks.
  void Register(AgentLink& agent) override;

 private:
  // "5 more OOM kills, too many to tell one by one (cove inspect ...)".
  std::string UntoldKills() const;

  std::string machine_;
  cove::v1::Machine& record_;
  Publish publish_;
  uint64_t hello_uptime_ms_ = 0;
  int64_t hello_steady_ms_ = 0;
  int high_beats_ = 0;
  int64_t kill_window_start_ms_ = 0;
  int kills_in_window_ = 0;
  int kills_untold_ = 0;
};

}  // namespace cove::daemon
