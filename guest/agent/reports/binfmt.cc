#include "guest/agent/reports/binfmt.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "guest/agent/mounts/mount_types.h"

namespace cove::agent {
namespace {

std::vector<std::string> SplitFields(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string field;
  for (char c : line) {
    if (c == sep) {
      out.push_back(field);
      field.clear();
    } else {
      field.push_back(c);
    }
  }
  out.push_back(field);
  return out;
}

std::string Resolved(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t start = 0;
  while (start < s.size() && (s[start] == ' ' || s[start] == '\t')) start++;
  return s.substr(start);
}

}  // namespace

bool ParseBinfmtLine(const std::string& raw, BinfmtHandler* handler, std::string* register_line) {
  const std::string line = Trim(raw);
  if (line.size() < 2 || line[0] == '#' || line[0] == ';') return false;
  // ":name:type:offset:magic:mask:interpreter:flags": the first character is
  // the separator.
  const std::vector<std::string> f = SplitFields(line.substr(1), line[0]);
  if (f.size() < 7 || f[0].empty() || f[5].empty() || (f[1] != "M" && f[1] != "E")) return false;
  handler->name = f[0];
  const size_t dash = f[0].rfind('-');
  handler->arch = dash == std::string::npos ? f[0] : f[0].substr(dash + 1);
  handler->interpreter = Resolved(f[5]);
  *register_line = line;
  return true;
}

BinfmtResult RegisterBinfmt(const std::string& conf_dir, const std::string& proc_dir) {
  BinfmtResult result;
  if (!Exists(proc_dir + "/register") && ::mount("binfmt_misc", proc_dir.c_str(), "binfmt_misc",
                                                 MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    result.error = std::string("mount binfmt_misc on ") + proc_dir + ": " + std::strerror(errno);
    return result;
  }
  DIR* dir = ::opendir(conf_dir.c_str());
  if (dir == nullptr) return result;  // an image without foreign interpreters
  std::vector<std::string> files;
  while (dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".conf") == 0) files.push_back(name);
  }
  ::closedir(dir);
  std::sort(files.begin(), files.end());
  for (const std::string& file : files) {
    std::istringstream lines(ReadBoundedFile(conf_dir + "/" + file, 16 * 1024));
    std::string raw;
    while (std::getline(lines, raw)) {
      BinfmtHandler handler;
      std::string line;
      if (!ParseBinfmtLine(raw, &handler, &line)) continue;
      if (!Exists(handler.interpreter)) continue;  // listed, but not in this image
      if (!Exists(proc_dir + "/" + handler.name)) {
        const int fd = ::open((proc_dir + "/register").c_str(), O_WRONLY | O_CLOEXEC);
        const bool ok =
            fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        const int err = errno;
        if (fd >= 0) ::close(fd);
        if (!ok) {
          if (result.error.empty()) {
            result.error = "register " + handler.name + ": " + std::strerror(err);
          }
          continue;
        }
      }
      result.handlers.push_back(std::move(handler));
    }
  }
  return result;
}

std::vector<EmulatedProcessInfo> ScanEmulated(const std::vector<BinfmtHandler>& handlers,
                                              size_t max, const std::string& proc) {
  std::vector<EmulatedProcessInfo> out;
  if (handlers.empty()) return out;
  DIR* dir = ::opendir(proc.c_str());
  if (dir == nullptr) return out;
  while (dirent* e = ::readdir(dir)) {
    if (out.size() >= max) break;
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    const std::string base = proc + "/" + e->d_name;
    char exe[PATH_MAX];
    const ssize_t n = ::readlink((base + "/exe").c_str(), exe, sizeof(exe) - 1);
    if (n <= 0) continue;
    exe[n] = '\0';
    const auto handler = std::find_if(handlers.begin(), handlers.end(),
                                      [&](const BinfmtHandler& h) { return h.interpreter == exe; });
    if (handler == handlers.end()) continue;
    EmulatedProcessInfo info;
    info.pid = static_cast<pid_t>(pid);
    info.arch = handler->arch;
    info.comm = Trim(ReadBoundedFile(base + "/comm", 64));
    // "0::/system.slice/docker-ID.scope" (cgroup v2 only).
    const std::string cgroup = Trim(ReadBoundedFile(base + "/cgroup", 4096));
    const size_t colons = cgroup.rfind("::");
    info.cgroup = colons == std::string::npos ? "" : cgroup.substr(colons + 2);
    std::istringstream status(ReadBoundedFile(base + "/status", 8192));
    std::string key;
    while (status >> key) {
      if (key == "VmRSS:") {
        uint64_t kib = 0;
        status >> kib;
        info.rss_bytes = kib * 1024;
        break;
      }
      status.ignore(4096, '\n');
    }
    out.push_back(std::move(info));
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end(), [](const EmulatedProcessInfo& a, const EmulatedProcessInfo& b) {
    return a.pid < b.pid;
  });
  return out;
}

}  // namespace cove::agent
