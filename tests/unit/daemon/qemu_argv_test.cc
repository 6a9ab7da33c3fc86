#include "daemon/driver/qemu/qemu_argv.h"

#include <algorithm>
#include <catch2/catch.hpp>

using namespace cove::daemon;

namespace {

LaunchSpec Spec() {
  LaunchSpec s;
  s.name = "dev";
  s.arch = "x86_64";
  s.cpus = 2;
  s.memory_bytes = 2ull << 30;
  s.accel = cove::v1::ACCEL_TCG;
  s.kernel = "/img/vmlinuz";
  s.initrd = "/m/initrd.img";
  s.disk = "/m/disk.qcow2";
  s.cmdline = "console=ttyS0 root=/dev/vda";
  s.serial_log = "/m/serial.log";
  s.qmp_socket = "/m/qmp.sock";
  s.agent_socket = "/m/agent.sock";
  s.pid_file = "/m/qemu.pid";
  return s;
}

std::string After(const std::vector<std::string>& argv, const std::string& flag, int nth = 0) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag && nth-- == 0) return argv[i + 1];
  }
  return "";
}

}  // namespace

TEST_CASE("qemu argv under tcg", "[qemu]") {
  auto argv = qemu::BuildQemuArgv("/usr/bin/qemu-system-x86_64", Spec());
  CHECK(argv[0] == "/usr/bin/qemu-system-x86_64");
  CHECK(After(argv, "-accel") == "tcg,thread=single,tb-size=256");
  CHECK(After(argv, "-cpu") == "max");
  CHECK(After(argv, "-machine") == "q35");
  CHECK(After(argv, "-m") == "2048M");
  CHECK(After(argv, "-smp") == "2");
  CHECK(After(argv, "-kernel") == "/img/vmlinuz");
  CHECK(After(argv, "-append") == "console=ttyS0 root=/dev/vda");
  CHECK(After(argv, "-qmp") == "unix:/m/qmp.sock,server=on,wait=off");
  CHECK(After(argv, "-chardev") == "socket,id=agent,path=/m/agent.sock,server=on,wait=off");
  CHECK(std::find(argv.begin(), argv.end(),
                  "virtserialport,bus=vser0.0,chardev=agent,name=org.cove.agent.0") != argv.end());
  // No shell anywhere.
  for (const auto& a : argv) CHECK(a != "sh");
}

TEST_CASE("qemu argv with kvm uses the host cpu", "[qemu]") {
  LaunchSpec s = Spec();
  s.accel = cove::v1::ACCEL_KVM;
  auto argv = qemu::BuildQemuArgv("qemu", s);
  CHECK(After(argv, "-accel") == "kvm");
  CHECK(After(argv, "-cpu") == "host");
}

TEST_CASE("aarch64 guests get the virt machine", "[qemu]") {
  LaunchSpec s = Spec();
  s.arch = "aarch64";
  CHECK(qemu::QemuBinaryName("aarch64") == "qemu-system-aarch64");
  CHECK(After(qemu::BuildQemuArgv("qemu", s), "-machine") == "virt");
}

TEST_CASE("commas in paths are escaped for qemu options", "[qemu]") {
  LaunchSpec s = Spec();
  s.disk = "/home/a,b/disk.qcow2";
  auto argv = qemu::BuildQemuArgv("qemu", s);
  CHECK(After(argv, "-drive").find("file=/home/a,,b/disk.qcow2,if=none") == 0);
}

TEST_CASE("user-net host forwards (benchmarks only) join the netdev", "[qemu]") {
  LaunchSpec s = Spec();
  CHECK(After(qemu::BuildQemuArgv("q", s), "-netdev") == "user,id=net0");
  s.user_net_hostfwds = {"tcp:127.0.0.1:25201-:5201", "udp::25353-:53"};
  CHECK(After(qemu::BuildQemuArgv("q", s), "-netdev") ==
        "user,id=net0,hostfwd=tcp:127.0.0.1:25201-:5201,hostfwd=udp::25353-:53");
}

TEST_CASE("info usernet: the TCP host forwards are read, the rest skipped", "[qemu]") {
  const std::string text =
      "Hub -1 (net0):\r\n"
      "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n"
      "  TCP[HOST_FORWARD]  15       127.0.0.1 39998       10.0.2.15 18082     0     0\r\n"
      "  TCP[ESTABLISHED]   23       10.0.2.15 40000       10.0.2.2  80        0     0\r\n"
      "  UDP[HOST_FORWARD]  16               * 25353       10.0.2.15    53     0     0\r\n"
      "  TCP[HOST_FORWARD]  14       127.0.0.1 39999       10.0.2.15 18081     0     0\r\n"
      "  TCP[HOST_FORWARD]  17       127.0.0.1 99999       10.0.2.15 18083     0     0\r\n";
  const auto fwds = qemu::ParseTcpHostForwards(text);
  REQUIRE(fwds.size() == 2);
  CHECK(fwds[0].host_ip == "127.0.0.1");
  CHECK(fwds[0].host_port == 39998);
  CHECK(fwds[0].guest_ip == "10.0.2.15");
  CHECK(fwds[0].guest_port == 18082);
  CHECK(fwds[1].host_port == 39999);
  CHECK(fwds[1].guest_port == 18081);
  CHECK(qemu::ParseTcpHostForwards("").empty());
}
