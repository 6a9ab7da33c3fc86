// The QEMU driver: qemu-system-ARCH as a child process in its own session,
// controlled over QMP, with the guest agent on a virtio-serial chardev.
#pragma once

#include <memory>
#include <string>

#include "daemon/driver/driver.h"
#include "daemon/loop/event_loop.h"

namespace cove::daemon::qemu {

class QemuDriver : public Driver {
 public:
  explicit QemuDriver(EventLoop& loop) : loop_(loop) {}

  // 9p everywhere (-virtfs); virtiofs through virtiofsd where vhost-user
  // exists (Linux hosts).
  MountSupport mount_support() const override {
#if defined(__linux__)
    return {.virtiofs_builtin = false, .virtiofs_vhost_user = true, .ninep = true};
#else
    return {.virtiofs_builtin = false, .virtiofs_vhost_user = false, .ninep = true};
#endif
  }

  absl::Status CreateDisk(const std::string& base_image, const std::string& disk,
                          uint64_t size_bytes) override;
  absl::Status GrowDisk(const std::string& disk, uint64_t size_bytes) override;
  absl::StatusOr<std::unique_ptr<VmInstance>> Launch(const LaunchSpec& spec,
                                                     VmCallbacks callbacks) override;
  absl::StatusOr<std::unique_ptr<VmInstance>> Adopt(const LaunchSpec& spec, int pid,
                                                    VmCallbacks callbacks) override;
  absl::StatusOr<AccelReport> ProbeAccelerators(const std::string& arch,
                                                const std::string& cache_file,
                                                const std::string& scratch_dir,
                                                bool reprobe) const override;

 private:
  EventLoop& loop_;
};

}  // namespace cove::daemon::qemu
