# shellcheck shell=bash
# shellcheck disable=SC2034  # variables for the scripts that source this
# Shared by the integration tests: a real coved on a temporary cove home,
# real VMs under TCG, the real cove CLI. Source it; it sets -euo pipefail.
#
# Needs: COVE_BIN (build/bin), COVE_TEST_IMAGE (a built guest image dir).
set -euo pipefail

: "${COVE_BIN:?COVE_BIN must point at the bin directory of the build}"
: "${COVE_TEST_IMAGE:?COVE_TEST_IMAGE must point at a built guest image (tests/run.sh makes one)}"
export PATH="$COVE_BIN:$PATH"
export COVE_NO_AUTOSTART=1
# Short: socket paths must fit 103 bytes.
COVE_HOME=$(mktemp -d /tmp/cit-XXXXXX)
export COVE_HOME
COVED_PID=""

log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
FAILED_LOGS_SHOWN=""
show_logs() {  # the tails of coved's log and of every console
  FAILED_LOGS_SHOWN=1
  if [ -f "$COVE_HOME/coved.log" ]; then
    log "--- coved.log (tail)"
    tail -n 40 "$COVE_HOME/coved.log" >&2 || true
  fi
  # A guest that died (a panic, say) explains itself only on its console.
  local console
  for console in "$COVE_HOME"/machines/*/serial.log; do
    [ -f "$console" ] || continue
    log "--- $console (tail)"
    tail -n 60 "$console" >&2 || true
  done
}
fail() {
  log "FAIL: $*"
  show_logs
  exit 1
}

# wait_for DEADLINE_S DESCRIPTION CMD...: polls CMD every 0.1 s until it
# succeeds; on timeout fails with the last output of CMD.
wait_for() {
  local deadline=$1 what=$2
  shift 2
  local end=$((SECONDS + deadline)) out=""
  while [ $SECONDS -lt "$end" ]; do
    if out=$("$@" 2>&1); then return 0; fi
    sleep 0.1
  done
  fail "timed out after ${deadline}s waiting for $what; last output: $out"
}

start_coved() {
  coved >>"$COVE_HOME/coved.stderr.log" 2>&1 &
  COVED_PID=$!
  wait_for 10 "coved to listen" cove list
}

stop_coved() {
  if [ -n "$COVED_PID" ] && kill -0 "$COVED_PID" 2>/dev/null; then
    kill -TERM "$COVED_PID"
    # coved gives RPCs 3 s to finish; a coved still there after 10 s is a bug
    # to see, and must not outlive the test.
    local i
    for _ in $(seq 100); do
      [ -d "/proc/$COVED_PID" ] && ! grep -q '^State:.*Z' "/proc/$COVED_PID/status" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$COVED_PID" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$COVED_PID/status" 2>/dev/null; then
      log "WARNING: coved (pid $COVED_PID) did not exit 10 s after SIGTERM; killing it"
      kill -9 "$COVED_PID" 2>/dev/null || true
    fi
    wait "$COVED_PID" 2>/dev/null || true
  fi
  COVED_PID=""
}

# qemu processes that belong to this test's home.
our_qemus() { pgrep -f "qemu-system.*$COVE_HOME" || true; }

# show_logs_unless_shown RC: for an exit trap. A command that failed under
# set -e, not through fail(), gets the logs too (77 is a skip).
show_logs_unless_shown() {
  if [ "$1" != 0 ] && [ "$1" != 77 ] && [ -z "$FAILED_LOGS_SHOWN" ]; then
    log "FAIL: exit status $1 (a command failed; its output is above)"
    show_logs
  fi
}

cleanup() {
  local rc=$?
  show_logs_unless_shown "$rc"
  stop_coved
  local pids
  pids=$(our_qemus)
  if [ -n "$pids" ]; then
    log "killing leftover qemu: $pids"
    kill -9 $pids 2>/dev/null || true
  fi
  rm -rf "$COVE_HOME"
  exit $rc
}
trap cleanup EXIT

# expect_fail PATTERN CMD...: CMD must exit non-zero and print PATTERN.
expect_fail() {
  local pattern=$1
  shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "expected failure from: $* (got: $out)"
  grep -q -- "$pattern" <<<"$out" || fail "expected '$pattern' from: $* (got: $out)"
}

machine_field() {  # machine_field NAME JQ-FILTER
  cove inspect "$1" --json | jq -r "$2"
}

# The busybox image archive the container tests load (tests/images).
test_image_tar() {
  local tar="$COVE_HOME/busybox.tar"
  [ -f "$tar" ] || "$COVE_SOURCE/tests/images/make-test-image" "$tar" >/dev/null
  echo "$tar"
}
TEST_IMAGE_REF=cove.test/busybox:latest

# No mounts: a test machine must not write into the home of whoever runs the
# tests (as root in CI, /root). mounts.sh tests the default home mount.
MACHINE_FLAGS=(--image "$COVE_TEST_IMAGE" --memory 1GiB --disk 4 --cpus 2 --mount none)
