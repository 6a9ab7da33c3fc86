#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang and runs each for
# SECONDS (default 20) over its seed corpus in tests/fuzz/corpus/<target>/.
#
#   tests/fuzz/run.sh [SECONDS]
#
# Binaries, a scratch corpus (new inputs the fuzzer finds; the committed seeds
# are only read) and crash inputs go to $COVE_BUILD_DIR/fuzz (default
# build/fuzz). Exits non-zero when any target crashes, printing the path of
# the crashing input; rerun it with `<build>/fuzz/<target> <crash-file>`.
set -euo pipefail

seconds=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=${COVE_BUILD_DIR:-$src/build}/fuzz
cxx=${COVE_FUZZ_CXX:-clang++}

# target name, then the sources it links: project files, or gen/... for code
# generated into $out/gen (protobuf, common/version.h; see generate below).
targets=(
  "agent_link_fuzz tests/fuzz/agent_link_guest.cc tests/fuzz/agent_link_seeds.cc
    daemon/agent/agent_link.cc daemon/loop/event_loop.cc daemon/loop/unix_stream.cc
    daemon/forward/port_rules.cc common/api_names.cc common/stream_mux.cc common/link_frame.cc
    common/errors.cc gen/cove/agent/v1/agent.pb.cc gen/cove/v1/machines.pb.cc
    gen/cove/v1/machine.pb.cc gen/cove/v1/forwards.pb.cc gen/cove/v1/events.pb.cc
    gen/cove/v1/exec.pb.cc gen/cove/v1/errors.pb.cc gen/google/rpc/status.pb.cc
    gen/google/rpc/error_details.pb.cc"
  "link_frame_fuzz common/link_frame.cc"
  "qmp_stream_fuzz daemon/driver/qemu/qmp_stream.cc"
  "size_name_fuzz common/sizes.cc common/names.cc"
  "stream_mux_fuzz common/stream_mux.cc common/link_frame.cc"
)
# Libraries beyond abseil, as pkg-config modules.
declare -A target_pkgs=(
  [agent_link_fuzz]="libuv protobuf spdlog fmt"
)

die() {
  echo "fuzz: $*" >&2
  exit 1
}

command -v "$cxx" >/dev/null ||
  die "$cxx not found; install it (Debian: apt-get install clang libclang-rt-14-dev)"
clang_major=$("$cxx" -dumpversion | cut -d. -f1)
runtime="$("$cxx" -print-runtime-dir)/libclang_rt.fuzzer-$(uname -m).a"
[ -f "$runtime" ] ||
  die "libFuzzer runtime $runtime is missing; install it (Debian: apt-get install libclang-rt-$clang_major-dev)"
absl=$(pkg-config --libs absl_strings absl_str_format absl_status absl_statusor) ||
  die "abseil not found by pkg-config; install it (Debian: apt-get install libabsl-dev pkgconf)"
read -ra absl_libs <<<"$absl"
[ -f /usr/include/nlohmann/json.hpp ] ||
  die "nlohmann/json.hpp is missing; install it (Debian: apt-get install nlohmann-json3-dev)"

mkdir -p "$out"

# Generated sources, made here rather than taken from the cmake build so that
# the fuzz build does not depend on its state: the protobuf code of proto/
# and common/version.h.
gen=$out/gen
generate() {
  local proto version
  command -v protoc >/dev/null ||
    die "protoc not found; install it (Debian: apt-get install protobuf-compiler libprotobuf-dev)"
  mkdir -p "$gen/common"
  # machines.proto and what it imports; common/errors.cc's.
  for proto in cove/agent/v1/agent.proto cove/v1/machines.proto cove/v1/machine.proto \
    cove/v1/forwards.proto cove/v1/events.proto cove/v1/exec.proto cove/v1/errors.proto \
    google/rpc/status.proto google/rpc/error_details.proto; do
    if [ "$src/proto/$proto" -nt "$gen/${proto%.proto}.pb.cc" ]; then
      protoc --proto_path="$src/proto" --cpp_out="$gen" "$src/proto/$proto"
    fi
  done
  if [ "$src/common/version.h.in" -nt "$gen/common/version.h" ] ||
    [ "$src/CMakeLists.txt" -nt "$gen/common/version.h" ]; then
    version=$(sed -n 's/^project(cove VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
    sed -e "s|@PROJECT_VERSION@|$version|" -e "s|@CMAKE_SOURCE_DIR@|$src|" \
      -e "s|@CMAKE_BINARY_DIR@|${out%/fuzz}|" -e "s|@CMAKE_INSTALL_PREFIX@|/usr/local|" \
      "$src/common/version.h.in" >"$gen/common/version.h"
  fi
}
generate
# Undefined behaviour must abort, or libFuzzer would not see it as a crash.
# shellcheck disable=SC2054  # the commas belong to -fsanitize=
cxxflags=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I"$src" -I"$gen")

# True when $1 is missing or older than this script, the target's source, a
# linked project source or a header next to one of them.
stale() {
  local bin=$1 name=$2 f h
  shift 2
  [ -f "$bin" ] || return 0
  for f in "$here/run.sh" "$here/$name.cc" "$here"/*.h "$@"; do
    [ "$f" -nt "$bin" ] && return 0
  done
  for f in "$@"; do
    for h in "$(dirname "$f")"/*.h; do
      [ "$h" -nt "$bin" ] && return 0
    done
  done
  return 1
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for entry in "${targets[@]}"; do
  read -r name sources <<<"${entry//$'\n'/ }"
  srcs=()
  for s in $sources; do
    case $s in
      gen/*) srcs+=("$out/$s") ;;
      *) srcs+=("$src/$s") ;;
    esac
  done
  pkgs=()
  if [ -n "${target_pkgs[$name]:-}" ]; then
    # shellcheck disable=SC2086  # a list of module names
    flags=$(pkg-config --cflags --libs ${target_pkgs[$name]}) ||
      die "$name needs the pkg-config modules ${target_pkgs[$name]} (Debian: libuv1-dev libprotobuf-dev libspdlog-dev libfmt-dev)"
    read -ra pkgs <<<"$flags"
  fi
  bin=$out/$name
  if stale "$bin" "$name" "${srcs[@]}"; then
    echo "fuzz: building $name"
    "$cxx" "${cxxflags[@]}" -o "$bin" "$here/$name.cc" "${srcs[@]}" "${pkgs[@]}" "${absl_libs[@]}"
  fi

  scratch=$out/corpus/$name
  artifacts=$out/crashes/$name/
  log=$out/$name.log
  mkdir -p "$scratch" "$artifacts"
  dict=()
  [ -f "$here/$name.dict" ] && dict=(-dict="$here/$name.dict")
  # libFuzzer writes new inputs into the first corpus directory only.
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$artifacts" "${dict[@]}" "$scratch" "$here/corpus/$name" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    echo "fuzz: $name ok: ${execs:-?} executions in ${seconds}s (log $log)"
  else
    status=1
    echo "fuzz: $name FAILED (log $log):"
    tail -n 60 "$log"
    crash=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n1)
    echo "fuzz: $name crashing input: ${crash:-see log}"
    [ -n "$crash" ] && echo "fuzz: reproduce with: $bin $crash"
  fi
done
exit "$status"
