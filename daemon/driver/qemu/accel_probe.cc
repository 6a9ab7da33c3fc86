#include "daemon/driver/qemu/accel_probe.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "absl/strings/match.h"
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

// A probe that took this much longer than tcg's ran on a hypervisor that
// emulates the guest (PVM, some nested setups): a real KVM runs the program in
// about the time qemu takes to start, like tcg does.
constexpr int kSlowFactor = 5;
constexpr int64_t kSlowFloorMs = 2000;

struct ProbeRun {
  AccelVerdict verdict;
  int64_t elapsed_ms = 0;
  // qemu aborted because kvm refused to set IA32_ARCH_CAPABILITIES.
  bool msr_refused = false;
};

// One qemu run of the probe program; the verdict says whether it got through.
ProbeRun RunProbe(const std::string& qemu, cove::v1::Accel accel, const std::string& cpu,
                  const std::string& kernel) {
  ProbeRun run;
  AccelVerdict& v = run.verdict;
  v.accel = accel;
  v.cpu = cpu;
  int timeout_ms = 5000;
  if (const char* env = std::getenv("COVE_ACCEL_PROBE_TIMEOUT_MS")) timeout_ms = std::atoi(env);
  const std::string name = AccelName(accel);
  const auto begin = std::chrono::steady_clock::now();
  auto result = RunCommand({qemu,
                            "-accel",
                            name,
                            "-machine",
                            "q35",
                            "-cpu",
                            cpu.empty() ? "max" : cpu,
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
  run.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - begin)
                       .count();
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
    run.msr_refused = absl::StrContains(result->output, "MSR 0x10a");
  }
  return run;
}

ProbeRun ProbeOne(const std::string& qemu, cove::v1::Accel accel, const std::string& kernel) {
  if (accel == cove::v1::ACCEL_KVM) {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      ProbeRun run;
      run.verdict.accel = accel;
      run.verdict.reason = absl::StrCat("cannot open /dev/kvm: ", std::strerror(errno));
      return run;
    }
    ::close(fd);
  }
  if (accel == cove::v1::ACCEL_TCG) return RunProbe(qemu, accel, "", kernel);
  ProbeRun run = RunProbe(qemu, accel, "host", kernel);
  // Some kvm hosts (nested, PVM) refuse qemu's write of IA32_ARCH_CAPABILITIES
  // and qemu aborts; without that CPU feature the guest may still run.
  if (!run.verdict.usable && run.msr_refused) {
    ProbeRun retry = RunProbe(qemu, accel, "host,-arch-capabilities", kernel);
    if (retry.verdict.usable) return retry;
  }
  return run;
}

}  // namespace

std::string ProbeKernelImage() {
  // A multiboot (v1) image loaded at 1 MiB with the a.out kludge (flag 16),
  // so qemu's -kernel loads it as a flat binary and jumps to 32-bit code. It
  // does what every 64-bit kernel does first: page tables, PAE, EFER.LME,
  // paging on, a far jump into a 64-bit code segment; only then does it write
  // 0x31 to isa-debug-exit. Assembled with GNU as (--64, .code32 then .code64):
  //   mov $0x110000,%edi; xor %eax,%eax; mov $0xc00,%ecx; rep stos  (3 zero pages)
  //   movl $0x111003,0x110000; movl $0x112003,0x111000  (PML4 -> PDPT -> PD)
  //   movl $0x83,0x112000                                (one 2 MiB page at 0)
  //   mov $0x110000,%eax; mov %eax,%cr3
  //   mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4         (PAE)
  //   mov $0xc0000080,%ecx; rdmsr; or $0x100,%eax; wrmsr  (EFER.LME)
  //   mov %cr0,%eax; or $0x80000001,%eax; mov %eax,%cr0   (PG | PE)
  //   lgdtl 0x1000b0; ljmp $0x8,$0x100084
  // 64-bit:
  //   mov $0x10,%ax; mov %eax,%ds; mov %eax,%ss; mov $0x31,%al; out %al,$0xf4
  //   hlt; jmp hlt
  // then the GDT (null, 64-bit code, data) at 0x98 and its pointer at 0xb0.
  static const unsigned char kImage[] = {
      0x02, 0xb0, 0xad, 0x1b, 0x00, 0x00, 0x01, 0x00, 0xfe, 0x4f, 0x51, 0xe4, 0x00, 0x00,
      0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x20, 0x00, 0x10, 0x00, 0xbf, 0x00, 0x00, 0x11, 0x00, 0x31, 0xc0, 0xb9, 0x00, 0x0c,
      0x00, 0x00, 0xf3, 0xab, 0xc7, 0x05, 0x00, 0x00, 0x11, 0x00, 0x03, 0x10, 0x11, 0x00,
      0xc7, 0x05, 0x00, 0x10, 0x11, 0x00, 0x03, 0x20, 0x11, 0x00, 0xc7, 0x05, 0x00, 0x20,
      0x11, 0x00, 0x83, 0x00, 0x00, 0x00, 0xb8, 0x00, 0x00, 0x11, 0x00, 0x0f, 0x22, 0xd8,
      0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb9, 0x80, 0x00, 0x00, 0xc0,
      0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x01,
      0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0x0f, 0x01, 0x15, 0xb0, 0x00, 0x10, 0x00, 0xea,
      0x84, 0x00, 0x10, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xd0,
      0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9a, 0x20, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x92, 0x00, 0x00, 0x17, 0x00, 0x98, 0x00, 0x10, 0x00};
  return std::string(reinterpret_cast<const char*>(kImage), sizeof(kImage));
}

absl::StatusOr<AccelReport> ProbeAccelerators(const std::string& qemu_binary,
                                              const std::string& arch,
                                              const std::string& cache_file,
                                              const std::string& scratch_dir, bool reprobe) {
  AccelReport report;
  auto qemu = FindInPath(qemu_binary);
  if (!qemu.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        qemu_binary, " is not installed; install it (Debian: apt-get install qemu-system-",
        arch == "aarch64" ? "arm" : "x86", ")"));
  }
  report.hypervisor_path = *qemu;
  auto version = RunCommand({*qemu, "--version"}, std::chrono::seconds(10));
  if (version.ok()) {
    const std::string first = version->output.substr(0, version->output.find('\n'));
    report.hypervisor_version = std::string(absl::StripAsciiWhitespace(first));
  }
  struct stat st {};
  ::stat(report.hypervisor_path.c_str(), &st);
  report.key = absl::StrCat(report.hypervisor_path, "|", report.hypervisor_version, "|",
                            st.st_mtime, "|", HostKernel(), "|", arch);

  if (!cache_file.empty() && !reprobe) {
    if (auto cached = LoadAccelReport(cache_file, report.key)) {
      cached->hypervisor_path = report.hypervisor_path;
      cached->hypervisor_version = report.hypervisor_version;
      return *cached;
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
  std::vector<ProbeRun> runs;
  for (cove::v1::Accel a : candidates) runs.push_back(ProbeOne(report.hypervisor_path, a, kernel));
  const ProbeRun& tcg = runs.back();
  auto slow = [&](const ProbeRun& run, const ProbeRun& against) {
    return run.verdict.usable && run.verdict.accel != cove::v1::ACCEL_TCG &&
           against.verdict.usable &&
           run.elapsed_ms > std::max(kSlowFloorMs, kSlowFactor * against.elapsed_ms);
  };
  for (ProbeRun& run : runs) {
    AccelVerdict& v = run.verdict;
    // Slow once may be a busy host: both are timed again, and only slow
    // twice convicts.
    bool convicted = false;
    if (slow(run, tcg)) {
      const ProbeRun again = ProbeOne(report.hypervisor_path, v.accel, kernel);
      const ProbeRun tcg_again = ProbeOne(report.hypervisor_path, cove::v1::ACCEL_TCG, kernel);
      convicted = slow(again, tcg_again);
    }
    if (convicted) {
      v.usable = false;
      v.reason = absl::StrCat("it ran the test guest in ", run.elapsed_ms, " ms where tcg took ",
                              tcg.elapsed_ms,
                              " ms: this hypervisor emulates the guest instead of running it "
                              "(a PVM or nested kvm)");
    }
    v.checked_at_unix = ::time(nullptr);
    spdlog::info("accel probe: {} {}{} ({} ms{})", AccelName(v.accel),
                 v.usable ? "works" : "unusable: ", v.reason, run.elapsed_ms,
                 v.cpu.empty() ? "" : absl::StrCat(", -cpu ", v.cpu));
    report.verdicts.push_back(v);
  }
  report.ChooseAuto();
  if (!cache_file.empty()) {
    if (auto saved = SaveAccelReport(report, cache_file); !saved.ok()) {
      spdlog::warn("cannot cache the accelerator verdicts: {}", std::string(saved.message()));
    }
  }
  return report;
}

}  // namespace cove::daemon::qemu
