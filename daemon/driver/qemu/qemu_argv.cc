#include "daemon/driver/qemu/qemu_argv.h"

#include <algorithm>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cove::daemon::qemu {

std::string QemuBinaryName(const std::string& arch) { return absl::StrCat("qemu-system-", arch); }

std::string EscapeOptionValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

std::vector<std::string> BuildQemuArgv(const std::string& qemu_binary, const LaunchSpec& spec) {
  const bool arm = spec.arch == "aarch64";
  std::vector<std::string> argv = {qemu_binary};
  auto add = [&argv](std::initializer_list<std::string> args) {
    argv.insert(argv.end(), args.begin(), args.end());
  };

  add({"-name", absl::StrCat("cove-", spec.name, ",debug-threads=on")});
  add({"-nodefaults", "-no-user-config", "-display", "none"});
  // A guest reboot or kernel panic (panic=-1) ends qemu instead of looping;
  // the machine layer reports it with the console's last lines.
  add({"-no-reboot"});
  switch (spec.accel) {
    case cove::v1::ACCEL_KVM:
      add({"-accel", "kvm", "-cpu", spec.cpu.empty() ? "host" : spec.cpu});
      break;
    case cove::v1::ACCEL_HVF:
      add({"-accel", "hvf", "-cpu", spec.cpu.empty() ? "host" : spec.cpu});
      break;
    default:
      // Single-threaded TCG with a large translation cache. Multi-threaded
      // TCG (QEMU 7.2, x86 guest) let one vCPU run stale translated code
      // while another live-patched kernel text: the guest died of an "int3"
      // oops at a jump-label site (kmem_cache_free+0x103) when docker
      // started containers, and once at boot. "max" gives the guest every
      // feature TCG can emulate. On aarch64, "max" with the architected
      // pointer-auth algorithm is very slow under TCG; the
      // implementation-defined one is not.
      add({"-accel", "tcg,thread=single,tb-size=256", "-cpu", arm ? "max,pauth-impdef=on" : "max"});
      break;
  }
  add({"-machine", arm ? "virt" : "q35"});
  add({"-smp", std::to_string(spec.cpus)});
  const std::string memory = absl::StrCat(spec.memory_bytes / (1024 * 1024), "M");
  add({"-m", memory});
  const bool virtiofs = std::any_of(spec.shares.begin(), spec.shares.end(), [](const SharedDir& s) {
    return s.type == cove::v1::MOUNT_TYPE_VIRTIOFS;
  });
  if (virtiofs) {
    // vhost-user devices need guest memory that virtiofsd can map too.
    add({"-object", absl::StrCat("memory-backend-memfd,id=mem,size=", memory, ",share=on"), "-numa",
         "node,memdev=mem"});
  }

  // Direct kernel boot: no bootloader, no firmware menus.
  add({"-kernel", spec.kernel, "-initrd", spec.initrd, "-append", spec.cmdline});

  add({"-drive", absl::StrCat("file=", EscapeOptionValue(spec.disk),
                              ",if=none,id=root,format=qcow2,discard=unmap,cache=writeback")});
  add({"-device", "virtio-blk-pci,drive=root"});
  std::string netdev = absl::StrCat("user,id=", kUserNetId);
  for (const std::string& fwd : spec.user_net_hostfwds) {
    netdev += ",hostfwd=" + EscapeOptionValue(fwd);
  }
  add({"-netdev", netdev});
  add({"-device", absl::StrCat("virtio-net-pci,netdev=", kUserNetId)});
  add({"-device", "virtio-rng-pci"});
  // Memory the guest frees goes back to the host: the guest's balloon driver
  // reports free 2 MiB blocks and qemu discards them (docs/diagnosis.md).
  add({"-device", "virtio-balloon-pci,free-page-reporting=on"});

  for (size_t i = 0; i < spec.shares.size(); ++i) {
    const SharedDir& share = spec.shares[i];
    const std::string id = absl::StrCat("fs", i);
    if (share.type == cove::v1::MOUNT_TYPE_VIRTIOFS) {
      add({"-chardev",
           absl::StrCat("socket,id=", id, ",path=", EscapeOptionValue(share.vhost_user_socket))});
      add({"-device",
           absl::StrCat("vhost-user-fs-pci,queue-size=1024,chardev=", id, ",tag=", share.tag)});
    } else {
      // security_model=none: qemu, running as the user, makes files the
      // user's; a guest chown to another uid fails (EPERM) as it would for
      // the user. Real symlinks stay symlinks (the mapped models would store
      // them as files).
      // multidevs=remap keeps inode numbers unique across host file systems.
      add({"-fsdev", absl::StrCat("local,id=", id, ",path=", EscapeOptionValue(share.host_path),
                                  ",security_model=none,multidevs=remap",
                                  share.read_only ? ",readonly=on" : "")});
      add({"-device", absl::StrCat("virtio-9p-pci,fsdev=", id, ",mount_tag=", share.tag)});
    }
  }

  // The agent link: qemu listens, coved connects (and reconnects after a
  // restart of coved, which is what makes re-adoption possible).
  add({"-device", "virtio-serial-pci,id=vser0"});
  add({"-chardev", absl::StrCat("socket,id=agent,path=", EscapeOptionValue(spec.agent_socket),
                                ",server=on,wait=off")});
  add({"-device", absl::StrCat("virtserialport,bus=vser0.0,chardev=agent,name=", kAgentPortName)});

  add({"-chardev", absl::StrCat("file,id=serial0,path=", EscapeOptionValue(spec.serial_log))});
  add({"-serial", "chardev:serial0"});
  add({"-qmp", absl::StrCat("unix:", EscapeOptionValue(spec.qmp_socket), ",server=on,wait=off")});
  add({"-pidfile", spec.pid_file});
  return argv;
}

std::vector<UserNetForward> ParseTcpHostForwards(const std::string& info_usernet) {
  // "  TCP[HOST_FORWARD]  14  127.0.0.1 39999  10.0.2.15 18081  0  0"
  std::vector<UserNetForward> out;
  std::istringstream lines(info_usernet);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string kind, fd, host_ip, host_port, guest_ip, guest_port;
    if (!(words >> kind >> fd >> host_ip >> host_port >> guest_ip >> guest_port)) continue;
    if (kind != "TCP[HOST_FORWARD]") continue;
    uint32_t hp = 0, gp = 0;
    if (!absl::SimpleAtoi(host_port, &hp) || !absl::SimpleAtoi(guest_port, &gp) || hp > 65535 ||
        gp > 65535) {
      continue;
    }
    out.push_back(
        UserNetForward{host_ip, static_cast<uint16_t>(hp), guest_ip, static_cast<uint16_t>(gp)});
  }
  return out;
}

}  // namespace cove::daemon::qemu
