// One machine's host directory mounts, for one boot at a time. The machine
// drives it through its lifecycle hooks; everything mount-specific lives
// here: picking each mount's transport, starting and watching virtiofsd,
// what the agent must mount, the agent's answers, host changes for the
// guest's watchers, and what is left to clean up.
//
//   PrepareLaunch  before each launch of the hypervisor (a fallback relaunch
//                  too): transports chosen, virtiofsd started, shares added
//   Adopt          a coved re-adopts the running machine: this boot's mounts
//                  and virtiofsd processes, from the run file
//   GuestMounts    what every HostHello asks the agent to mount
//   OnMountStatus, OnWatchedDirs   the agent's answers and reports
//   Release        the hypervisor is gone: virtiofsd ended, run files removed
//
// It outlives boots (the virtiofsd processes of a boot are started before the
// hypervisor and ended after it) and is attached to each boot for the agent's
// MountStatus and WatchedDirs reports and the start's readiness.
//
// Threading: loop thread only. Owned by the Machine.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cove/agent/v1/agent.pb.h"
#include "cove/v1/machines.pb.h"
#include "daemon/agent/agent_link.h"
#include "daemon/driver/driver.h"
#include "daemon/loop/event_loop.h"
#include "daemon/loop/process_watch.h"
#include "daemon/machine/boot_component.h"
#include "daemon/mount/host_watcher.h"

namespace cove::daemon {

class MountSet : public BootComponent {
 public:
  struct Env {
    EventLoop& loop;
    std::string machine;  // its name, for messages
    std::string dir;      // its directory: sockets, logs and the run file go here
    MountSupport support;
    // The agent link of the machine, or null while there is none.
    std::function<AgentLink*()> agent;
  };
  // A mount changed state on its own (mounted, failed, host directory gone).
  using Changed = std::function<void(const cove::v1::MountInfo& mount)>;

  MountSet(Env env, Changed changed);
  ~MountSet() override;
  MountSet(const MountSet&) = delete;
  MountSet& operator=(const MountSet&) = delete;

  // Errors name the mount and say why (no virtiofsd, a socket path too long).
  absl::Status PrepareLaunch(const google::protobuf::RepeatedPtrField<cove::v1::Mount>& mounts,
                             LaunchSpec& spec);
  void Adopt();
  std::vector<cove::agent::v1::GuestMount> GuestMounts() const;
  void OnMountStatus(const cove::agent::v1::MountStatus& status);
  void OnWatchedDirs(const cove::agent::v1::WatchedDirs& dirs);
  void Release();
  // At coved start, for a machine that is not running: ends what an earlier
  // coved's boot of it left (virtiofsd processes, sockets, the run file).
  void ReleaseLeftovers();

  // nullopt while a mount is pending; OK once all are mounted (or there are
  // none); otherwise the first failure, naming the mount.
  std::optional<absl::Status> Readiness() const override;
  void Register(AgentLink& agent) override;
  std::vector<cove::v1::MountInfo> View() const;

 private:
  struct Entry {
    cove::v1::MountInfo info;
    std::string socket;  // virtiofs: the vhost-user socket
    std::string log;     // virtiofs: virtiofsd's output
    std::unique_ptr<ProcessWatch> virtiofsd;
  };
  std::string RunFile() const { return env_.dir + "/mounts.json"; }
  absl::Status PrepareShares(const google::protobuf::RepeatedPtrField<cove::v1::Mount>& mounts,
                             LaunchSpec& spec);
  absl::Status StartVirtiofsd(Entry& entry, const std::string& binary);
  void SaveRunFile() const;
  void StartWatching();
  void SetState(Entry& entry, cove::v1::MountState state, const std::string& error);
  Entry* Find(const std::string& tag);
  void OnVirtiofsdGone(const std::string& tag, int pid, const std::string& how);
  // Ends a virtiofsd that outlived its machine's boot; reaped when it goes.
  void End(std::unique_ptr<ProcessWatch> process);

  Env env_;
  Changed changed_;
  std::vector<Entry> entries_;
  std::unique_ptr<HostWatcher> watcher_;
  // virtiofsd processes told to end, kept until reaped.
  std::vector<std::unique_ptr<ProcessWatch>> ending_;
  Timer ending_deadline_;
};

}  // namespace cove::daemon
