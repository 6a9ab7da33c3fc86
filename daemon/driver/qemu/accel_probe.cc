#include "daemon/driver/qemu/accel_probe.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/subprocess.h"
#include "spdlog/spdlog.h"

namespace cove::daemon::qemu {
namespace {

// qemu exits with (value << 1) | 1 when the guest writes `value` to
// isa-debug-exit; the program writes 0x31.
constexpr int kProbeExitCode = (0x31 << 1) | 1;

std::string HostKernel() {
  struct utsname u {};
  ::uname(&u);
  return absl::StrCat(u.sysname, " ", u.release);
}

std::string LastLine(const std::string& text) {
  absl::string_view t = absl::StripTrailingAsciiWhitespace(text);
  size_t nl = t.rfind('\n');
  return std::string(nl == absl::string_view::npos ? t : t.substr(nl + 1));
}

AccelVerdict ProbeOne(const std::string& qemu, cove::v1::Accel accel, const std::string& kernel) {
  AccelVerdict v{accel, false, ""};
  if (accel == cove::v1::ACCEL_KVM) {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      v.reason = absl::StrCat("cannot open /dev/kvm: ", std::strerror(errno));
      return v;
    }
    ::close(fd);
  }
  int timeout_ms = 5000;
  if (const char* env = std::getenv("COVE_ACCEL_PROBE_TIMEOUT_MS")) timeout_ms = std::atoi(env);
  const std::string name = AccelName(accel);
  auto result = RunCommand({qemu,
                            "-accel",
                            name,
                            "-machine",
                            "q35",
                            "-cpu",
                            accel == cove::v1::ACCEL_TCG ? "max" : "host",
                            "-m",
                            "64",
                            "-nodefaults",
                            "-no-user-config",
                            "-display",
                            "none",
                            "-serial",
                            "none",
                            "-no-reboot",
                            "-device",
                            "isa-debug-exit,iobase=0xf4,iosize=0x04",
                            "-kernel",
                            kernel},
                           std::chrono::milliseconds(timeout_ms));
  if (!result.ok()) {
    v.reason = absl::StrCat("cannot run ", qemu, ": ", result.status().message());
  } else if (result->exit_code == kProbeExitCode) {
    v.usable = true;
  } else if (result->timed_out) {
    v.reason = absl::StrCat("a test guest hung for ", timeout_ms / 1000, " s under ", name);
  } else {
    std::string last = LastLine(result->output);
    v.reason = absl::StrCat("qemu -accel ", name, " failed (", result->Describe(), ")",
                            last.empty() ? "" : ": ", last);
  }
  return v;
}

}  // namespace

std::string ProbeKernelImage() {
  // A multiboot (v1) image loaded at 1 MiB with the a.out kludge (flag 16),
  // so qemu's -kernel loads it as flat binary and jumps to 32-bit code:
  //   mov dx, 0x3f8; mov al, 'K'; out dx, al   (a byte on COM1)
  //   mov al, 0x31; out 0xf4, al               (isa-debug-exit)
  //   hlt; jmp hlt
  const uint32_t magic = 0x1BADB002, flags = 0x00010000;
  const uint32_t header[8] = {magic,    flags,        static_cast<uint32_t>(-(magic + flags)),
                              0x100000, 0x100000,     0,
                              0,        0x100000 + 32};
  std::string image(reinterpret_cast<const char*>(header), sizeof(header));
  const unsigned char code[] = {0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x4B, 0xEE,
                                0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD};
  image.append(reinterpret_cast<const char*>(code), sizeof(code));
  return image;
}

absl::StatusOr<AccelReport> ProbeAccelerators(const std::string& qemu_binary,
                                              const std::string& arch,
                                              const std::string& cache_file,
                                              const std::string& scratch_dir) {
  AccelReport report;
  auto qemu = FindInPath(qemu_binary);
  if (!qemu.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        qemu_binary, " is not installed; install it (Debian: apt-get install qemu-system-",
        arch == "aarch64" ? "arm" : "x86", ")"));
  }
  report.qemu_path = *qemu;
  auto version = RunCommand({*qemu, "--version"}, std::chrono::seconds(10));
  if (version.ok()) {
    const std::string first = version->output.substr(0, version->output.find('\n'));
    report.qemu_version = std::string(absl::StripAsciiWhitespace(first));
  }
  struct stat st {};
  ::stat(report.qemu_path.c_str(), &st);
  const std::string key = absl::StrCat(report.qemu_path, "|", report.qemu_version, "|", st.st_mtime,
                                       "|", HostKernel(), "|", arch);

  if (!cache_file.empty()) {
    if (auto cached = ReadFile(cache_file); cached.ok()) {
      auto j = nlohmann::json::parse(*cached, nullptr, false);
      if (j.is_object() && j.value("key", "") == key && j.contains("verdicts")) {
        for (const auto& e : j["verdicts"]) {
          report.verdicts.push_back({static_cast<cove::v1::Accel>(e.value("accel", 0)),
                                     e.value("usable", false), e.value("reason", "")});
        }
        report.auto_accel = static_cast<cove::v1::Accel>(j.value("auto", 4));
        return report;
      }
    }
  }

  std::vector<cove::v1::Accel> candidates;
#if defined(__APPLE__)
  candidates.push_back(cove::v1::ACCEL_HVF);
#else
  candidates.push_back(cove::v1::ACCEL_KVM);
#endif
  candidates.push_back(cove::v1::ACCEL_TCG);
  const std::string kernel = scratch_dir + "/accel-probe.bin";
  if (auto st2 = WriteFileAtomically(kernel, ProbeKernelImage(), 0644); !st2.ok()) return st2;

  // The probe program is x86; other guest architectures get hardware
  // acceleration only when host and guest match, which is checked by the
  // machine layer.
  for (cove::v1::Accel a : candidates) {
    AccelVerdict v = ProbeOne(report.qemu_path, a, kernel);
    spdlog::info("accel probe: {} {}{}", AccelName(a), v.usable ? "works" : "unusable: ", v.reason);
    report.verdicts.push_back(v);
  }
  report.auto_accel = cove::v1::ACCEL_TCG;
  for (const auto& v : report.verdicts) {
    if (v.usable) {
      report.auto_accel = v.accel;
      break;
    }
  }
  if (!cache_file.empty()) {
    nlohmann::json j = {
        {"key", key}, {"auto", report.auto_accel}, {"verdicts", nlohmann::json::array()}};
    for (const auto& v : report.verdicts) {
      j["verdicts"].push_back({{"accel", v.accel}, {"usable", v.usable}, {"reason", v.reason}});
    }
    (void)WriteFileAtomically(cache_file, j.dump(2) + "\n");
  }
  return report;
}

}  // namespace cove::daemon::qemu
