# shellcheck shell=bash
# shellcheck disable=SC2034  # variables for the scripts that source this
# Sourced by the bench scripts: cove from this build on PATH, a private
# COVE_HOME removed at exit with every qemu it started, and coved.
#   source "$(dirname "$0")/lib.sh"; bench_start_coved
# Set BENCH_CLEANUP to more paths to remove at exit.
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${COVE_BIN:-$src/build/bin}
export PATH="$bin:$PATH" COVE_NO_AUTOSTART=1
COVE_HOME=$(mktemp -d /tmp/cbench-XXXXXX)
export COVE_HOME
BENCH_CLEANUP=()
coved_pid=""
cleanup() {
  [ -n "$coved_pid" ] && kill "$coved_pid" 2>/dev/null && wait "$coved_pid" 2>/dev/null
  pkill -9 -f "qemu-system.*$COVE_HOME" 2>/dev/null || true
  rm -rf "$COVE_HOME" "${BENCH_CLEANUP[@]}"
}
trap cleanup EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%3N; }

# coved in the background (its output in $COVE_HOME/coved.out), answering.
bench_start_coved() {
  coved >"$COVE_HOME/coved.out" 2>&1 &
  coved_pid=$!
  for _ in $(seq 100); do cove list >/dev/null 2>&1 && return; sleep 0.1; done
  echo "coved did not answer: $(tail -n 5 "$COVE_HOME/coved.out")" >&2
  exit 1
}
