#include "daemon/mount/mount_set.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/paths.h"
#include "common/subprocess.h"
#include "daemon/mount/mount_spec.h"
#include "daemon/mount/virtiofsd.h"
#include "spdlog/spdlog.h"

namespace cove::daemon {
namespace {

constexpr uint64_t kEndGraceMs = 3000;

// A listening unix socket at `path`, not at fd 3 (that is where the child
// gets it, and dup2 onto itself would keep FD_CLOEXEC).
absl::StatusOr<int> Listen(const std::string& path) {
  if (auto st = CheckSocketPath(path); !st.ok()) return st;
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == 3) {
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
    ::close(fd);
    fd = moved;
  }
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 1) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot listen on ", path, ": ", std::strerror(err)));
  }
  ::chmod(path.c_str(), 0600);
  return fd;
}

// A virtiofsd an earlier coved started for this share, still running.
bool IsOurVirtiofsd(int pid, const std::string& host_path) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string cmdline = ss.str();
  return absl::StrContains(cmdline, "virtiofsd") &&
         absl::StrContains(cmdline, std::string("--shared-dir") + '\0' + host_path + '\0');
}

// Over 9p (cache=mmap, the only mode that sees host edits at once) the guest
// kernel makes a new inode for every lookup, so no inotify watch there ever
// fires: host changes cannot be replayed to guest watchers (docs/mounts.md).
void SetHostEvents(cove::v1::MountInfo& info, const MountSupport& can) {
  const bool virtiofs = info.mount().type() == cove::v1::MOUNT_TYPE_VIRTIOFS;
  info.set_host_events(virtiofs);
  if (virtiofs) return;
  info.set_host_events_note(absl::StrCat(
      "over 9p, saves on the host do not wake inotify watchers in the guest (hot reload, test "
      "watchers); ",
      can.virtiofs_vhost_user
          ? "install a virtiofsd that runs as you (Debian 13, Ubuntu 24.04: apt install "
            "virtiofsd) and restart the machine, so it mounts over virtiofs, or "
          : "",
      "make the watchers poll (CHOKIDAR_USEPOLLING=1, webpack's watchOptions.poll, "
      "nodemon --legacy-watch)"));
}

}  // namespace

MountSet::MountSet(Env env, Changed changed)
    : env_(std::move(env)), changed_(std::move(changed)), ending_deadline_(env_.loop) {}

MountSet::~MountSet() {
  // A machine deleted: its virtiofsds end and are reaped without it.
  Release();
  for (auto& p : ending_) ProcessWatch::ReapWhenGone(std::move(p));
}

absl::Status MountSet::PrepareLaunch(
    const google::protobuf::RepeatedPtrField<cove::v1::Mount>& mounts, LaunchSpec& spec) {
  Release();  // a relaunch (accelerator fallback) starts over
  absl::Status st = PrepareShares(mounts, spec);
  if (!st.ok()) Release();  // what was started for it ends
  return st;
}

absl::Status MountSet::PrepareShares(
    const google::protobuf::RepeatedPtrField<cove::v1::Mount>& mounts, LaunchSpec& spec) {
  if (mounts.empty()) return absl::OkStatus();
  const MountSupport& can = env_.support;
  std::optional<absl::StatusOr<VirtiofsdBinary>> virtiofsd;
  auto find_virtiofsd = [&]() -> const absl::StatusOr<VirtiofsdBinary>& {
    if (!virtiofsd) virtiofsd = FindVirtiofsd();
    return *virtiofsd;
  };
  for (int i = 0; i < mounts.size(); ++i) {
    Entry entry;
    cove::v1::Mount& m = *entry.info.mutable_mount();
    m = mounts[i];
    entry.info.set_tag(absl::StrCat("cove", i));
    entry.info.set_state(cove::v1::MOUNT_STATE_PENDING);
    const std::string what = absl::StrCat("mount ", DescribeMount(m));
    struct stat st {};
    const int err = ::stat(m.host_path().c_str(), &st) == 0 ? 0 : errno;
    if (err != 0 || !S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": the host directory ", m.host_path(), " is gone (",
          err == 0 ? "not a directory" : std::strerror(err),
          "); make it again, or change the mounts with `cove set ", env_.machine, " --mount ...`"));
    }
    cove::v1::MountType type = m.type();
    if (type == cove::v1::MOUNT_TYPE_AUTO) {
      const bool virtiofs =
          can.virtiofs_builtin || (can.virtiofs_vhost_user && find_virtiofsd().ok());
      type = virtiofs ? cove::v1::MOUNT_TYPE_VIRTIOFS : cove::v1::MOUNT_TYPE_9P;
      if (!virtiofs && !can.ninep) {
        return absl::FailedPreconditionError(
            absl::StrCat(what, ": this driver has neither virtiofs nor 9p"));
      }
    } else if (type == cove::v1::MOUNT_TYPE_VIRTIOFS && !can.virtiofs_builtin) {
      if (!can.virtiofs_vhost_user) {
        return absl::FailedPreconditionError(
            absl::StrCat(what,
                         ": virtiofs is not available with this driver on this host; use "
                         "--mount-type 9p or auto"));
      }
      if (!find_virtiofsd().ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": ", find_virtiofsd().status().message(), "; or use --mount-type 9p or auto"));
      }
    } else if (type == cove::v1::MOUNT_TYPE_9P && !can.ninep) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": this driver has no 9p; use --mount-type virtiofs or auto"));
    }
    m.set_type(type);
    SetHostEvents(entry.info, can);
    if (type == cove::v1::MOUNT_TYPE_VIRTIOFS && !can.virtiofs_builtin) {
      if (auto started = StartVirtiofsd(entry, find_virtiofsd()->path); !started.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(what, ": ", started.message()));
      }
    }
    spec.shares.push_back(SharedDir{.tag = entry.info.tag(),
                                    .host_path = m.host_path(),
                                    .read_only = m.read_only(),
                                    .type = type,
                                    .vhost_user_socket = entry.socket});
    entries_.push_back(std::move(entry));
  }
  SaveRunFile();
  StartWatching();
  return absl::OkStatus();
}

absl::Status MountSet::StartVirtiofsd(Entry& entry, const std::string& binary) {
  const std::string& tag = entry.info.tag();
  entry.socket = absl::StrCat(env_.dir, "/", tag, ".sock");
  entry.log = absl::StrCat(env_.dir, "/", tag, "-virtiofsd.log");
  auto fd = Listen(entry.socket);
  if (!fd.ok()) return fd.status();
  ::unlink(entry.log.c_str());
  const cove::v1::Mount& m = entry.info.mount();
  auto pid = SpawnDetached(
      VirtiofsdArgv(binary, m.host_path(), m.read_only(), ::getuid(), ::getgid()), entry.log, *fd);
  ::close(*fd);  // virtiofsd has it now; qemu's connection waits in its backlog
  if (!pid.ok()) return pid.status();
  entry.virtiofsd = std::make_unique<ProcessWatch>(
      env_.loop, *pid, /*is_child=*/true,
      [this, tag, p = *pid](const std::string& how) { OnVirtiofsdGone(tag, p, how); });
  if (auto st = entry.virtiofsd->Begin(); !st.ok()) {
    return absl::InternalError(absl::StrCat("virtiofsd ended at once: ", TailLines(entry.log, 3)));
  }
  spdlog::info("{}: virtiofsd (pid {}) serves {} as {}", env_.machine, *pid, m.host_path(), tag);
  return absl::OkStatus();
}

void MountSet::SaveRunFile() const {
  nlohmann::json j = nlohmann::json::array();
  for (const Entry& e : entries_) {
    const cove::v1::Mount& m = e.info.mount();
    j.push_back({{"tag", e.info.tag()},
                 {"type", m.type()},
                 {"host_path", m.host_path()},
                 {"guest_path", m.guest_path()},
                 {"read_only", m.read_only()},
                 {"socket", e.socket},
                 {"log", e.log},
                 {"pid", e.virtiofsd ? e.virtiofsd->pid() : 0}});
  }
  if (auto st = WriteFileAtomically(RunFile(), j.dump() + "\n"); !st.ok()) {
    spdlog::warn("{}: cannot save {}: {}", env_.machine, RunFile(), std::string(st.message()));
  }
}

void MountSet::Adopt() {
  entries_.clear();
  auto text = ReadFile(RunFile());
  if (!text.ok()) return;  // a machine without mounts, or from before them
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_array()) return;
  for (const auto& e : j) {
    Entry entry;
    entry.info.set_tag(e.value("tag", ""));
    entry.info.set_state(cove::v1::MOUNT_STATE_PENDING);  // until the agent says so again
    cove::v1::Mount& m = *entry.info.mutable_mount();
    m.set_type(static_cast<cove::v1::MountType>(e.value("type", 0)));
    m.set_host_path(e.value("host_path", ""));
    m.set_guest_path(e.value("guest_path", ""));
    m.set_read_only(e.value("read_only", false));
    SetHostEvents(entry.info, env_.support);
    entry.socket = e.value("socket", "");
    entry.log = e.value("log", "");
    const int pid = e.value("pid", 0);
    if (pid > 0 && IsOurVirtiofsd(pid, m.host_path())) {
      const std::string tag = entry.info.tag();
      entry.virtiofsd = std::make_unique<ProcessWatch>(
          env_.loop, pid, /*is_child=*/false,
          [this, tag, pid](const std::string& how) { OnVirtiofsdGone(tag, pid, how); });
      if (!entry.virtiofsd->Begin().ok()) entry.virtiofsd.reset();
    }
    if (m.type() == cove::v1::MOUNT_TYPE_VIRTIOFS && !env_.support.virtiofs_builtin &&
        !entry.virtiofsd) {
      entry.info.set_state(cove::v1::MOUNT_STATE_FAILED);
      entry.info.set_error("its virtiofsd ended while coved was not running; restart the machine");
    }
    entries_.push_back(std::move(entry));
  }
  StartWatching();
}

void MountSet::StartWatching() {
  watcher_.reset();
  if (entries_.empty()) return;
  watcher_ = std::make_unique<HostWatcher>(
      env_.loop,
      [this](cove::agent::v1::HostChanges changes) {
        AgentLink* agent = env_.agent ? env_.agent() : nullptr;
        if (agent == nullptr || !agent->ready()) return;
        cove::agent::v1::HostToGuest msg;
        *msg.mutable_host_changes() = std::move(changes);
        agent->SendControl(msg);
      },
      [this](const std::string& tag) {
        Entry* e = Find(tag);
        if (e == nullptr) return;
        SetState(*e, cove::v1::MOUNT_STATE_HOST_GONE,
                 absl::StrCat("the host directory ", e->info.mount().host_path(),
                              " was removed or moved away; ", e->info.mount().guest_path(),
                              " in the guest shows nothing until it is back and the machine is "
                              "restarted"));
      });
  if (auto st = watcher_->Start(); !st.ok()) {
    spdlog::warn("{}: host changes will not reach guest watchers: {}", env_.machine,
                 std::string(st.message()));
    return;
  }
  for (const Entry& e : entries_) watcher_->AddMount(e.info.tag(), e.info.mount().host_path());
}

std::vector<cove::agent::v1::GuestMount> MountSet::GuestMounts() const {
  std::vector<cove::agent::v1::GuestMount> out;
  for (const Entry& e : entries_) {
    cove::agent::v1::GuestMount g;
    g.set_tag(e.info.tag());
    g.set_guest_path(e.info.mount().guest_path());
    g.set_type(e.info.mount().type() == cove::v1::MOUNT_TYPE_VIRTIOFS
                   ? cove::agent::v1::GuestMount::VIRTIOFS
                   : cove::agent::v1::GuestMount::NINEP);
    g.set_read_only(e.info.mount().read_only());
    out.push_back(std::move(g));
  }
  return out;
}

MountSet::Entry* MountSet::Find(const std::string& tag) {
  for (Entry& e : entries_) {
    if (e.info.tag() == tag) return &e;
  }
  return nullptr;
}

void MountSet::SetState(Entry& entry, cove::v1::MountState state, const std::string& error) {
  if (entry.info.state() == state && entry.info.error() == error) return;
  // A failure says more than a later "mounted" from a guest that still has
  // the stale mount.
  if ((entry.info.state() == cove::v1::MOUNT_STATE_HOST_GONE ||
       entry.info.state() == cove::v1::MOUNT_STATE_FAILED) &&
      state == cove::v1::MOUNT_STATE_MOUNTED) {
    return;
  }
  entry.info.set_state(state);
  entry.info.set_error(error);
  // The type is set by now, so the description names the transport.
  const std::string what = DescribeMount(entry.info.mount());
  if (state == cove::v1::MOUNT_STATE_MOUNTED) {
    spdlog::info("{}: mounted {}", env_.machine, what);
  } else {
    spdlog::warn("{}: mount {}: {}", env_.machine, what, error);
  }
  if (changed_) changed_(entry.info);
}

void MountSet::Register(AgentLink& agent) {
  agent.Handle(
      cove::agent::v1::GuestToHost::kMountStatus,
      [this](const cove::agent::v1::GuestToHost& msg) { OnMountStatus(msg.mount_status()); });
  agent.Handle(
      cove::agent::v1::GuestToHost::kWatchedDirs,
      [this](const cove::agent::v1::GuestToHost& msg) { OnWatchedDirs(msg.watched_dirs()); });
}

void MountSet::OnMountStatus(const cove::agent::v1::MountStatus& status) {
  Entry* e = Find(status.tag());
  if (e == nullptr) return;
  if (status.mounted()) {
    SetState(*e, cove::v1::MOUNT_STATE_MOUNTED, "");
  } else {
    SetState(*e, cove::v1::MOUNT_STATE_FAILED, status.error().substr(0, 512));
  }
}

void MountSet::OnWatchedDirs(const cove::agent::v1::WatchedDirs& dirs) {
  Entry* e = Find(dirs.tag());
  // A read-only mount cannot be touched from the guest, so no replay; a 9p
  // mount's watchers cannot be woken.
  if (e == nullptr || !watcher_ || e->info.mount().read_only() || !e->info.host_events()) return;
  std::vector<std::string> list;
  for (const std::string& d : dirs.dirs()) {
    // Relative, inside the mount: the agent made them so, a guest cannot
    // be trusted to.
    if (absl::StartsWith(d, "/") || d == ".." || absl::StartsWith(d, "../") ||
        absl::StrContains(d, "/../") || absl::EndsWith(d, "/..")) {
      continue;
    }
    list.push_back(d);
    if (list.size() == HostWatcher::kMaxWatches) break;
  }
  watcher_->SetWatched(dirs.tag(), list);
  e->info.set_watched_dirs(static_cast<uint32_t>(watcher_->watched(dirs.tag())));
}

void MountSet::OnVirtiofsdGone(const std::string& tag, int pid, const std::string& how) {
  // One told to end (a released boot) is only reaped.
  for (auto it = ending_.begin(); it != ending_.end(); ++it) {
    if ((*it)->pid() == pid) {
      ending_.erase(it);
      return;
    }
  }
  Entry* e = Find(tag);
  if (e == nullptr || !e->virtiofsd || e->virtiofsd->pid() != pid) return;
  const std::string tail = TailLines(e->log, 3);
  SetState(*e, cove::v1::MOUNT_STATE_FAILED,
           absl::StrCat("virtiofsd ", how, tail.empty() ? "" : ": ", tail, "; the guest's ",
                        e->info.mount().guest_path(),
                        " no longer works until the machine is restarted"));
  // Destroyed later: this runs inside its callback.
  env_.loop.Post([dead = std::shared_ptr<ProcessWatch>(std::move(e->virtiofsd))]() {});
}

void MountSet::End(std::unique_ptr<ProcessWatch> process) {
  if (!process || process->gone()) return;
  // It ends by itself when qemu goes; a signal makes sure.
  process->Signal(SIGTERM);
  ending_.push_back(std::move(process));
  ending_deadline_.Start(kEndGraceMs, [this]() {
    for (auto& p : ending_) p->Signal(SIGKILL);
  });
}

void MountSet::ReleaseLeftovers() {
  // A coved that died before its machine's qemu: the virtiofsds of that boot
  // (the run file names them) may outlive it, serving no one.
  auto text = ReadFile(RunFile());
  if (text.ok()) {
    auto j = nlohmann::json::parse(*text, nullptr, false);
    for (const auto& e : j.is_array() ? j : nlohmann::json::array()) {
      const int pid = e.value("pid", 0);
      if (pid > 0 && IsOurVirtiofsd(pid, e.value("host_path", ""))) {
        auto watch = std::make_unique<ProcessWatch>(env_.loop, pid, /*is_child=*/false,
                                                    [](const std::string&) {});
        if (watch->Begin().ok()) {
          watch->Signal(SIGTERM);
          ProcessWatch::ReapWhenGone(std::move(watch));
        }
      }
      const std::string socket = e.value("socket", "");
      if (!socket.empty()) ::unlink(socket.c_str());
    }
  }
  Release();
}

void MountSet::Release() {
  watcher_.reset();
  for (Entry& e : entries_) {
    End(std::move(e.virtiofsd));
    if (!e.socket.empty()) ::unlink(e.socket.c_str());
  }
  entries_.clear();
  ::unlink(RunFile().c_str());
}

std::optional<absl::Status> MountSet::Readiness() const {
  bool pending = false;
  for (const Entry& e : entries_) {
    switch (e.info.state()) {
      case cove::v1::MOUNT_STATE_MOUNTED:
        break;
      case cove::v1::MOUNT_STATE_FAILED:
      case cove::v1::MOUNT_STATE_HOST_GONE:
        return absl::FailedPreconditionError(
            absl::StrCat("mount ", DescribeMount(e.info.mount()), " failed: ", e.info.error()));
      default:
        pending = true;
    }
  }
  if (pending) return std::nullopt;
  return absl::OkStatus();
}

std::vector<cove::v1::MountInfo> MountSet::View() const {
  std::vector<cove::v1::MountInfo> out;
  for (const Entry& e : entries_) out.push_back(e.info);
  return out;
}

}  // namespace cove::daemon
