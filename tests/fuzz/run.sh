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

# target name, then the project sources it links.
targets=(
  "link_frame_fuzz common/link_frame.cc"
  "qmp_stream_fuzz daemon/driver/qemu/qmp_stream.cc"
  "size_name_fuzz common/sizes.cc common/names.cc"
  "stream_mux_fuzz common/stream_mux.cc common/link_frame.cc"
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
# Undefined behaviour must abort, or libFuzzer would not see it as a crash.
# shellcheck disable=SC2054  # the commas belong to -fsanitize=
cxxflags=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I"$src")

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
  read -r name sources <<<"$entry"
  srcs=()
  for s in $sources; do srcs+=("$src/$s"); done
  bin=$out/$name
  if stale "$bin" "$name" "${srcs[@]}"; then
    echo "fuzz: building $name"
    "$cxx" "${cxxflags[@]}" -o "$bin" "$here/$name.cc" "${srcs[@]}" "${absl_libs[@]}"
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
