// The hypervisor boundary. A Driver launches and adopts virtual machines; a
// VmInstance is one running hypervisor process. QEMU is the first driver; a
// vz driver (vfkit: a child process with a REST control socket) has the same
// shape: build an argv, spawn, talk to a control socket.
//
// Threading: everything here is called on the daemon's loop thread, and
// callbacks run on it. Ownership: the machine layer owns each VmInstance;
// destroying it forgets the process (it keeps running, so a later coved can
// adopt it) but closes every connection to it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cove/v1/machines.pb.h"
#include "daemon/driver/accel.h"

namespace cove::daemon {

// A host directory the hypervisor shares with the guest under `tag`.
struct SharedDir {
  std::string tag;
  std::string host_path;
  bool read_only = false;
  cove::v1::MountType type = cove::v1::MOUNT_TYPE_9P;  // never AUTO
  // virtiofs through a vhost-user daemon (QEMU): the socket it serves.
  std::string vhost_user_socket;
};

// Which mount transports a driver offers.
struct MountSupport {
  // virtiofs by the hypervisor itself (vz).
  bool virtiofs_builtin = false;
  // virtiofs through an external vhost-user daemon, virtiofsd (QEMU on Linux).
  bool virtiofs_vhost_user = false;
  bool ninep = false;
};

// Everything a driver needs to run one machine. Paths are absolute.
struct LaunchSpec {
  std::string name;
  std::string arch;  // "x86_64" or "aarch64"
  uint32_t cpus = 0;
  uint64_t memory_bytes = 0;
  cove::v1::Accel accel = cove::v1::ACCEL_TCG;  // resolved, never AUTO
  // The CPU model for a hardware accelerator (qemu -cpu), as the accelerator
  // probe found it to work; empty means the driver's default.
  std::string cpu;
  std::string kernel;
  std::string initrd;
  std::string disk;  // qcow2
  std::string cmdline;
  std::string serial_log;
  std::string qmp_socket;
  std::string agent_socket;
  std::string pid_file;
  std::string hypervisor_log;  // the hypervisor's own stdout and stderr
  // QEMU user-net host forwards ("tcp:127.0.0.1:25201-:5201"), for the
  // benchmarks that compare cove's forwards with QEMU's own on the same VM
  // (COVE_BENCH_HOSTFWD, see bench/ports.sh). Empty in normal use.
  std::vector<std::string> user_net_hostfwds;
  std::vector<SharedDir> shares;
};

// How a hypervisor process ended.
struct VmExit {
  // The guest powered itself off (or we asked it to and it did).
  bool clean = false;
  // Human-readable: "guest powered off", "qemu killed by signal 9", ...
  std::string reason;
};

struct VmCallbacks {
  // The process is gone. Runs once, last.
  std::function<void(const VmExit&)> on_exit;
  // Something the guest did that the machine should know: "reset", "stop",
  // "panic". Informational; the process lives on.
  std::function<void(const std::string& what)> on_guest_event;
  // The hypervisor has stopped running the guest for good and says why
  // (qemu: run state internal-error, "KVM internal error ..."). The process
  // lives on until killed.
  std::function<void(const std::string& why)> on_stuck;
};

class VmInstance {
 public:
  virtual ~VmInstance() = default;
  virtual int pid() const = 0;
  // Asks the guest to power off as a power button would (ACPI). False if
  // the request could not even be sent (control socket not up yet).
  virtual bool RequestPowerdown() = 0;
  // Ends the hypervisor without the guest's help (qemu: QMP quit). False if
  // the request could not be sent.
  virtual bool Quit() = 0;
  // SIGKILL.
  virtual void Kill() = 0;

  // Lanes (docs/ports.md, "Routes"): a TCP port on the host's 127.0.0.1
  // through which the hypervisor's user-mode network reaches `guest_port` on
  // the guest's network interface (QEMU: a user-net hostfwd). `done` runs
  // once, with the host port or why there is none (maybe not at all if the
  // instance is destroyed first); a driver without such a network says so
  // and forwards keep using the agent link. While the control connection is
  // down but may come back (QMP reconnecting) the request waits.
  using LaneDone = std::function<void(absl::StatusOr<uint16_t> host_port)>;
  virtual void OpenLane(uint16_t guest_port, LaneDone done) {
    (void)guest_port;
    const LaneDone refuse = std::move(done);
    refuse(absl::UnimplementedError("this driver has no user-mode network to forward through"));
  }
  // Ends the lane on `host_port`; errors are logged only.
  virtual void CloseLane(uint16_t host_port) { (void)host_port; }
};

class Driver {
 public:
  virtual ~Driver() = default;
  virtual MountSupport mount_support() const = 0;
  // Makes the machine's disk: a copy-on-write overlay over `base_image` (raw)
  // of `size_bytes`. Blocking; short.
  virtual absl::Status CreateDisk(const std::string& base_image, const std::string& disk,
                                  uint64_t size_bytes) = 0;
  // Grows a stopped machine's disk to `size_bytes` (never shrinks it); the
  // guest grows its file system at the next boot. Blocking; short.
  virtual absl::Status GrowDisk(const std::string& disk, uint64_t size_bytes) = 0;
  // Starts the hypervisor in its own session, so it outlives coved.
  virtual absl::StatusOr<std::unique_ptr<VmInstance>> Launch(const LaunchSpec& spec,
                                                             VmCallbacks callbacks) = 0;
  // Which accelerators really run a guest of `arch` here (blocking, seconds:
  // call it off the loop thread, as AccelResolver does). Uses and refreshes
  // the verdicts cached in `cache_file` unless `reprobe`; `scratch_dir` is
  // for the probe's own files.
  virtual absl::StatusOr<AccelReport> ProbeAccelerators(const std::string& arch,
                                                        const std::string& cache_file,
                                                        const std::string& scratch_dir,
                                                        bool reprobe) const = 0;
  // Takes over a hypervisor started by an earlier coved, if `pid` still is
  // that machine's hypervisor.
  virtual absl::StatusOr<std::unique_ptr<VmInstance>> Adopt(const LaunchSpec& spec, int pid,
                                                            VmCallbacks callbacks) = 0;
};

}  // namespace cove::daemon
