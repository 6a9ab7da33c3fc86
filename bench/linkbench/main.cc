// cove-linkbench: throughput of byte streams through the multiplexed agent
// link, next to socat relaying the same bytes in the same run. See
// docs/benchmarks.md ("Agent link throughput") and bench/linkbench/relays.h.
//
//   cove-linkbench [--mib N] [--streams 1,8] [--reps 5] [--agent PATH]
//                  [--socat PATH] [--socat-buffer 0,131072] [--keep]
//
// Prints a markdown table and, last, one JSON line with every run.
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/linkbench/relays.h"
#include "bench/linkbench/traffic.h"
#include "spdlog/spdlog.h"

namespace cove::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string DefaultAgent() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "cove-agent" : (self.parent_path() / "cove-agent").string();
}

struct Key {
  std::string relay;
  Direction direction;
  size_t streams;
  auto operator<=>(const Key&) const = default;
};

struct Runs {
  std::vector<double> mib_s;
  std::vector<double> cpu_s_per_gib;
};

const char* DirectionName(Direction d) { return d == Direction::kUpload ? "upload" : "download"; }

// To `digits` decimals, so the JSON shows 373.2 rather than 373.20000000000005.
double Round(double v, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

// The markdown table, then one JSON line with every run. Ratios are to the
// first peer (relays[1]), socat with its default buffer unless told otherwise.
void PrintReport(const std::vector<std::unique_ptr<Relay>>& relays, std::map<Key, Runs>& runs,
                 const std::vector<size_t>& stream_counts, const std::vector<Direction>& directions,
                 uint64_t mib, int reps, const std::string& transport) {
  utsname host{};
  uname(&host);
  std::printf(
      "cove-linkbench: %ld cores, Linux %s; %s transport; %llu MiB per stream, median of %d "
      "runs\n\n",
      sysconf(_SC_NPROCESSORS_ONLN), host.release, transport.c_str(),
      static_cast<unsigned long long>(mib), reps);
  const std::string peer_name = relays.size() > 1 ? relays[1]->name() : "-";
  std::printf(
      "| relay | direction | streams | median MiB/s | vs %s | relay CPU s/GiB | runs (MiB/s) |\n",
      peer_name.c_str());
  std::printf("|---|---|---|---|---|---|---|\n");
  nlohmann::json json = {
      {"benchmark", "linkbench"}, {"transport", transport}, {"cpus", sysconf(_SC_NPROCESSORS_ONLN)},
      {"mib_per_stream", mib},    {"reps", reps},           {"results", nlohmann::json::array()}};
  for (size_t streams : stream_counts) {
    for (Direction d : directions) {
      const double peer = relays.size() > 1 ? Median(runs[Key{peer_name, d, streams}].mib_s) : 0;
      for (const auto& relay : relays) {
        const Runs& r = runs[Key{relay->name(), d, streams}];
        const double median = Median(r.mib_s);
        const double cpu = Median(r.cpu_s_per_gib);
        std::string list;
        std::vector<double> rounded;
        for (double v : r.mib_s) {
          list += (list.empty() ? "" : " ") + std::to_string(std::lround(v));
          rounded.push_back(Round(v, 1));
        }
        char ratio[32] = "-";
        if (peer > 0) std::snprintf(ratio, sizeof(ratio), "%.2fx", median / peer);
        std::printf("| %s | %s | %zu | %.0f | %s | %.2f | %s |\n", relay->name().c_str(),
                    DirectionName(d), streams, median, ratio, cpu, list.c_str());
        json["results"].push_back({{"relay", relay->name()},
                                   {"direction", DirectionName(d)},
                                   {"streams", streams},
                                   {"median_mib_s", Round(median, 1)},
                                   {"median_cpu_s_per_gib", Round(cpu, 2)},
                                   {"runs_mib_s", rounded}});
      }
    }
  }
  std::printf("\n%s\n", json.dump().c_str());
}

int Run(int argc, char** argv) {
  CLI::App app{"Throughput of the cove agent link next to socat (see docs/benchmarks.md)"};
  uint64_t mib = 256;
  std::vector<size_t> stream_counts = {1, 8};
  int reps = 5;
  std::string agent = DefaultAgent();
  std::string socat = "socat";
  std::vector<size_t> socat_buffers = {0, 131072};
  std::vector<std::string> direction_names = {"upload", "download"};
  bool keep = false;
  std::string transport = "unix";
  app.add_option("--mib", mib, "MiB moved per stream in each trial")->check(CLI::Range(1, 65536));
  app.add_option("--streams", stream_counts, "parallel stream counts to measure")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  app.add_option("--reps", reps, "trials per case; the median is reported")
      ->check(CLI::Range(1, 1000));
  app.add_option("--agent", agent, "cove-agent binary (default: next to this one)");
  app.add_option("--socat", socat, "socat binary; empty to skip the peer");
  app.add_option("--socat-buffer", socat_buffers, "socat -b sizes to measure (0: its default)")
      ->delimiter(',');
  app.add_option("--directions", direction_names, "upload (client -> sink), download or both")
      ->delimiter(',')
      ->check(CLI::IsMember({"upload", "download"}));
  app.add_flag("--keep", keep, "keep the work directory (sockets, logs)");
  app.add_option("--transport", transport,
                 "unix: socket forwards (the runtime sockets); tcp: port forwards")
      ->check(CLI::IsMember({"unix", "tcp"}));
  CLI11_PARSE(app, argc, argv);

  std::vector<Direction> directions;
  for (const std::string& d : direction_names) {
    directions.push_back(d == "upload" ? Direction::kUpload : Direction::kDownload);
  }
  std::signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::warn);
  char dir_template[] = "/tmp/linkbench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = dir_template;
  // Removes the work directory on every way out, unless it is wanted: asked
  // for, or kept for its logs after a failure.
  struct RemoveDir {
    const std::string& dir;
    const bool& keep;
    ~RemoveDir() {
      std::error_code ec;
      if (!keep) {
        std::filesystem::remove_all(dir, ec);
      } else {
        std::fprintf(stderr, "linkbench: work directory kept: %s\n", dir.c_str());
      }
    }
  } remove_dir{dir, keep};
  int rc = 0;
  {
    absl::StatusOr<std::unique_ptr<Sink>> sink = Sink::Start(dir, transport == "tcp");
    if (!sink.ok()) {
      std::fprintf(stderr, "linkbench: %s\n", sink.status().ToString().c_str());
      return 1;
    }
    std::vector<std::unique_ptr<Relay>> relays;
    auto add = [&](absl::StatusOr<std::unique_ptr<Relay>> relay) {
      if (!relay.ok()) {
        std::fprintf(stderr, "linkbench: %s\n", relay.status().ToString().c_str());
        keep = true;  // agent.log or socat's log may say why
        return false;
      }
      relays.push_back(std::move(*relay));
      return true;
    };
    if (!add(StartCoveRelay(agent, dir, **sink))) return 1;
    if (!socat.empty()) {
      for (size_t i = 0; i < socat_buffers.size(); i++) {
        if (!add(StartSocatRelay(socat, dir, "socat" + std::to_string(i), socat_buffers[i],
                                 **sink))) {
          return 1;
        }
      }
    }

    const uint64_t bytes = mib * 1024 * 1024;
    const auto timeout = std::chrono::seconds(120);
    // Warm-up: first connections, page cache, socat's first fork.
    for (auto& relay : relays) {
      for (Direction d : {Direction::kUpload, Direction::kDownload}) {
        auto r = RunTrial(**sink, d == Direction::kUpload ? relay->in_path() : relay->out_path(), d,
                          1, std::min<uint64_t>(bytes, 16 << 20), timeout);
        if (!r.ok()) {
          std::fprintf(stderr, "linkbench: warm-up through %s: %s\n", relay->name().c_str(),
                       r.status().ToString().c_str());
          keep = true;
          return 1;
        }
      }
    }

    std::map<Key, Runs> runs;
    for (int rep = 0; rep < reps; rep++) {
      for (size_t streams : stream_counts) {
        for (Direction d : directions) {
          // A different relay goes first each repetition, so none always
          // runs on a machine still busy with the previous trial.
          for (size_t k = 0; k < relays.size(); k++) {
            Relay& relay = *relays[(k + rep) % relays.size()];
            const double cpu0 = relay.CpuSeconds();
            auto r = RunTrial(**sink, d == Direction::kUpload ? relay.in_path() : relay.out_path(),
                              d, streams, bytes, timeout);
            if (!r.ok()) {
              std::fprintf(stderr, "linkbench: %s %s x%zu: %s\n", relay.name().c_str(),
                           DirectionName(d), streams, r.status().ToString().c_str());
              keep = true;
              rc = 1;
              continue;
            }
            const double cpu = relay.CpuSeconds() - cpu0;
            Runs& out = runs[Key{relay.name(), d, streams}];
            out.mib_s.push_back(static_cast<double>(r->bytes) / kMiB / r->seconds);
            out.cpu_s_per_gib.push_back(cpu / (static_cast<double>(r->bytes) / (kMiB * 1024)));
          }
        }
      }
    }

    PrintReport(relays, runs, stream_counts, directions, mib, reps, transport);
    std::fflush(stdout);
  }
  return rc;
}

}  // namespace
}  // namespace cove::bench

int main(int argc, char** argv) { return cove::bench::Run(argc, argv); }
