#include "client/service_manager.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "client/service_templates.h"
#include "common/atomic_file.h"
#include "common/subprocess.h"

namespace cove::client {
namespace {

namespace fs = std::filesystem;

constexpr auto kCommandTimeout = std::chrono::seconds(20);
constexpr auto kStopWait = std::chrono::seconds(15);

#if defined(__APPLE__)
constexpr bool kMacOS = true;
#else
constexpr bool kMacOS = false;
#endif
constexpr const char* kLabel = "dev.cove.coved";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::string UnitDir() {
  if (kMacOS) return Env("HOME") + "/Library/LaunchAgents";
  const std::string xdg = Env("XDG_CONFIG_HOME");
  return (xdg.empty() ? Env("HOME") + "/.config" : xdg) + "/systemd/user";
}

std::string LaunchdDomain() { return absl::StrCat("gui/", ::getuid()); }

absl::StatusOr<CommandResult> Manager(std::vector<std::string> args) {
  if (kMacOS) {
    args.insert(args.begin(), "launchctl");
  } else {
    args.insert(args.begin(), {"systemctl", "--user"});
  }
  return RunCommand(args, kCommandTimeout);
}

// Runs a manager command that must succeed; the error quotes its output.
absl::Status MustRun(const std::vector<std::string>& args) {
  auto r = Manager(args);
  if (!r.ok()) return r.status();
  if (r->ok()) return absl::OkStatus();
  std::string cmd = kMacOS ? "launchctl" : "systemctl --user";
  for (const auto& a : args) absl::StrAppend(&cmd, " ", a);
  return absl::InternalError(absl::StrCat("`", cmd, "` failed (", r->Describe(),
                                          "): ", absl::StripAsciiWhitespace(r->output)));
}

// Whether this user has a service manager to talk to, and if not, why.
bool ManagerAvailable(std::string* note) {
  if (kMacOS) {
    auto r = Manager({"print", LaunchdDomain()});
    if (r.ok() && r->ok()) {
      *note = absl::StrCat("launchd (", LaunchdDomain(), ")");
      return true;
    }
    *note = absl::StrCat("launchd has no ", LaunchdDomain(),
                         " domain here (not logged in at the console?)");
    return false;
  }
  const std::string runtime = Env("XDG_RUNTIME_DIR");
  if (runtime.empty() || !fs::exists(runtime + "/systemd/private")) {
    *note = absl::StrCat(
        "no systemd user instance runs for this user (",
        runtime.empty() ? "XDG_RUNTIME_DIR is not set"
                        : absl::StrCat("no ", runtime, "/systemd/private"),
        "); usual in containers, CI and `su` sessions. The unit files take effect at the next "
        "login with systemd; until then `cove` starts coved on demand");
    return false;
  }
  if (!FindInPath("systemctl").ok()) {
    *note = "systemctl is not installed";
    return false;
  }
  *note = "systemd --user";
  return true;
}

}  // namespace

int RunningCovedPid(const std::string& lock_path) {
  int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int pid = 0;
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    ::flock(fd, LOCK_UN);  // nobody holds it: no coved
  } else {
    char buf[32] = {};
    if (::pread(fd, buf, sizeof(buf) - 1, 0) > 0) pid = std::atoi(buf);
  }
  ::close(fd);
  return pid;
}

ServiceManager::ServiceManager(HomeLayout layout, std::string coved)
    : layout_(std::move(layout)), coved_(std::move(coved)) {}

std::vector<std::pair<std::string, std::string>> ServiceManager::UnitFiles() const {
  auto fill = [this](const char* tmpl) {
    return absl::StrReplaceAll(tmpl, {{"@COVED@", coved_}, {"@COVE_HOME@", layout_.home}});
  };
  const std::string dir = UnitDir();
  if (kMacOS) return {{absl::StrCat(dir, "/", kLabel, ".plist"), fill(kLaunchdPlist)}};
  return {{dir + "/coved.service", fill(kSystemdService)},
          {dir + "/coved.socket", fill(kSystemdSocket)}};
}

ServiceStatus ServiceManager::Status() const {
  ServiceStatus s;
  s.installed = true;
  for (const auto& [path, text] : UnitFiles()) {
    s.unit_files.push_back(path);
    if (!fs::exists(path)) s.installed = false;
  }
  s.manager_available = ManagerAvailable(&s.manager_note);
  s.coved_pid = RunningCovedPid(layout_.lock());
  if (!s.manager_available || !s.installed) return s;
  if (kMacOS) {
    auto r = Manager({"print", absl::StrCat(LaunchdDomain(), "/", kLabel)});
    s.enabled = s.active = r.ok() && r->ok();
    return s;
  }
  auto enabled = Manager({"is-enabled", "coved.socket"});
  s.enabled = enabled.ok() && enabled->ok();
  auto active = Manager({"is-active", "coved.socket"});
  s.active = active.ok() && active->ok();
  return s;
}

absl::Status ServiceManager::StopDirect(int pid) const {
  if (::kill(pid, SIGTERM) != 0) {
    return absl::InternalError(absl::StrCat("cannot signal coved (pid ", pid, ")"));
  }
  const auto deadline = std::chrono::steady_clock::now() + kStopWait;
  while (RunningCovedPid(layout_.lock()) != 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("coved (pid ", pid, ") did not stop within 15 s; see ", layout_.log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ServiceManager::Install() {
  const std::string dir = UnitDir();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  if (auto st = EnsurePrivateDir(layout_.home); !st.ok()) return st;
  std::string done;
  for (const auto& [path, text] : UnitFiles()) {
    if (auto st = WriteFileAtomically(path, text, 0644); !st.ok()) return st;
    absl::StrAppend(&done, "wrote ", path, "\n");
  }
  std::string note;
  if (!ManagerAvailable(&note)) return absl::StrCat(done, "not enabled: ", note, "\n");
  // The manager must own the socket: a coved started by hand gives it up.
  // Its machines keep running and the managed coved re-adopts them.
  if (const int pid = RunningCovedPid(layout_.lock()); pid != 0 && !Status().active) {
    if (auto st = StopDirect(pid); !st.ok()) return st;
    absl::StrAppend(&done, "stopped coved (pid ", pid, ") started outside ", note, "\n");
  }
  if (kMacOS) {
    const std::string plist = UnitFiles()[0].first;
    (void)Manager({"bootout", absl::StrCat(LaunchdDomain(), "/", kLabel)});  // an older copy
    if (auto st = MustRun({"bootstrap", LaunchdDomain(), plist}); !st.ok()) return st;
  } else {
    if (auto st = MustRun({"daemon-reload"}); !st.ok()) return st;
    if (auto st = MustRun({"enable", "--now", "coved.socket", "coved.service"}); !st.ok()) {
      return st;
    }
  }
  return absl::StrCat(done, "enabled and started with ", note, "; coved now starts at login\n");
}

absl::StatusOr<std::string> ServiceManager::Uninstall() {
  std::string done;
  std::string note;
  const bool manager = ManagerAvailable(&note);
  if (manager && Status().installed) {
    if (kMacOS) {
      (void)Manager({"bootout", absl::StrCat(LaunchdDomain(), "/", kLabel)});
    } else if (auto st = MustRun({"disable", "--now", "coved.socket", "coved.service"}); !st.ok()) {
      return st;
    }
    absl::StrAppend(&done, "disabled and stopped the ", kMacOS ? "LaunchAgent" : "units",
                    " (machines keep running; the next coved re-adopts them)\n");
  }
  bool any = false;
  for (const auto& [path, text] : UnitFiles()) {
    std::error_code ec;
    if (fs::remove(path, ec)) {
      absl::StrAppend(&done, "removed ", path, "\n");
      any = true;
    }
  }
  if (manager && !kMacOS && any) (void)MustRun({"daemon-reload"});
  if (done.empty()) done = "nothing to uninstall: no unit files were installed\n";
  return done;
}

absl::StatusOr<std::string> ServiceManager::Start() {
  if (kMacOS) {
    // After `cove daemon stop` the agent is unloaded: load it again.
    const std::vector<std::string> args =
        Status().active
            ? std::vector<std::string>{"kickstart", absl::StrCat(LaunchdDomain(), "/", kLabel)}
            : std::vector<std::string>{"bootstrap", LaunchdDomain(), UnitFiles()[0].first};
    if (auto st = MustRun(args); !st.ok()) return st;
  } else if (auto st = MustRun({"start", "coved.socket", "coved.service"}); !st.ok()) {
    return st;
  }
  return std::string("started coved through the service manager\n");
}

absl::StatusOr<std::string> ServiceManager::Stop() {
  const ServiceStatus s = Status();
  if (s.manager_available && s.installed && s.active) {
    if (kMacOS) {
      // KeepAlive would restart a killed coved: unload the agent instead.
      if (auto st = MustRun({"bootout", absl::StrCat(LaunchdDomain(), "/", kLabel)}); !st.ok()) {
        return st;
      }
      return std::string(
          "stopped coved and unloaded its LaunchAgent until the next login or `cove daemon "
          "start`; machines keep running\n");
    }
    if (auto st = MustRun({"stop", "coved.service"}); !st.ok()) return st;
    return std::string(
        "stopped coved.service; coved.socket stays, so the next cove command starts it again; "
        "machines keep running\n");
  }
  if (s.coved_pid == 0) return std::string("coved is not running\n");
  if (auto st = StopDirect(s.coved_pid); !st.ok()) return st;
  return absl::StrCat("stopped coved (pid ", s.coved_pid, "); machines keep running\n");
}

}  // namespace cove::client
