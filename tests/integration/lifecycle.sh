#!/usr/bin/env bash
# The walking skeleton: cove start creates and boots "default"; list shows it
# running; stop leaves no qemu; delete leaves no directory; events stream
# every step as JSON lines.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved

log "one coved per home"
expect_fail "already runs for this home" coved

cove events --json >"$COVE_HOME/events.jsonl" &
EVENTS_PID=$!

log "cove start (creates default)"
begin=$SECONDS
cove start "${MACHINE_FLAGS[@]}"
log "running after $((SECONDS - begin)) s"
[ $((SECONDS - begin)) -le 60 ] || fail "default took more than 60 s to run"

list=$(cove list --json)
[ "$(jq -r '.[0].name' <<<"$list")" = default ] || fail "list: $list"
[ "$(jq -r '.[0].state' <<<"$list")" = running ] || fail "not running: $list"
[ "$(jq -r '.[0].memory' <<<"$list")" = 1073741824 ] || fail "memory: $list"
[ "$(jq -r '.[0].disk' <<<"$list")" = 4294967296 ] || fail "disk: $list"
[ "$(jq -r '.[0].cpus' <<<"$list")" = 2 ] || fail "cpus: $list"
[ "$(jq -r '.[0].arch' <<<"$list")" = x86_64 ] || fail "arch: $list"
accel=$(jq -r '.[0].accel' <<<"$list")
case "$accel" in tcg|kvm) ;; *) fail "accel in use: $accel" ;; esac
[ "$(machine_field default .guest.agent_version)" != null ] || fail "no agent info"
pid=$(machine_field default .pid)
kill -0 "$pid" || fail "qemu pid $pid is not alive"
cove list | grep -q '^default *running' || fail "table: $(cove list)"

# Files of a running machine; sockets within the home.
dir="$COVE_HOME/machines/default"
for f in machine.json disk.qcow2 serial.log qmp.sock agent.sock; do
  [ -e "$dir/$f" ] || fail "missing $dir/$f"
done
[ "$(stat -c %a "$COVE_HOME")" = 700 ] || fail "home mode $(stat -c %a "$COVE_HOME")"
[ "$(stat -c %a "$COVE_HOME/coved.sock")" = 600 ] || fail "socket mode"

log "the guest's network: reported, followed when a route changes, and doctor names a missing one"
net=$(machine_field default .guest.network)
jq -e '.addresses | map(select(.interface == "eth0" and .address == "10.0.2.15" and .prefix_length == 24)) | length == 1' \
  <<<"$net" >/dev/null || fail "guest addresses: $net"
jq -e '.gateway == "10.0.2.2" and .gateway_interface == "eth0" and .nameservers == ["10.0.2.3"]' \
  <<<"$net" >/dev/null || fail "guest route and resolver: $net"
doctor=$(cove doctor default --json) || true
jq -e 'map(select(.severity == "ok" and (.message | startswith("network: 10.0.2.15/24")) and (.message | contains("via 10.0.2.2, nameserver 10.0.2.3")))) | length == 1' \
  <<<"$doctor" >/dev/null || fail "doctor has no network finding: $doctor"
cove exec default -- ip route del default
# The agent follows route changes (rtnetlink), no refresh asked.
wait_for 10 "the removed default route in inspect" \
  bash -c "[ \"\$(cove inspect default --json | jq -r .guest.network.gateway)\" = '' ]"
rc=0
doctor=$(cove doctor default --json) || rc=$?
[ "$rc" = 1 ] || fail "doctor exited $rc with the guest's default route gone"
jq -e 'map(select(.severity == "error" and (.message | contains("no default route")) and (.fix | contains("cove restart default")))) | length == 1' \
  <<<"$doctor" >/dev/null || fail "doctor does not name the missing route: $doctor"
cove exec default -- ip route add default via 10.0.2.2 dev eth0
wait_for 10 "the default route back in inspect" \
  bash -c "[ \"\$(cove inspect default --json | jq -r .guest.network.gateway)\" = 10.0.2.2 ]"

log "cove stop"
cove stop
[ "$(machine_field default .state)" = stopped ] || fail "not stopped"
[ -z "$(our_qemus)" ] || fail "qemu still running after stop: $(our_qemus)"
[ ! -e "$dir/qmp.sock" ] && [ ! -e "$dir/agent.sock" ] || fail "sockets left after stop"

log "start again (a stopped machine) and restart"
cove start default
[ "$(machine_field default .state)" = running ] || fail "not running after second start"
cove restart default
[ "$(machine_field default .state)" = running ] || fail "not running after restart"
cove stop default

log "cove delete default"
cove delete default
[ ! -e "$dir" ] || fail "$dir still exists"
[ "$(cove list --json)" = "[]" ] || fail "list not empty: $(cove list --json)"
[ -z "$(our_qemus)" ] || fail "qemu left: $(our_qemus)"
[ -z "$(find "$COVE_HOME/machines" -mindepth 1)" ] || fail "left in machines/: $(ls -A "$COVE_HOME/machines")"

log "events"
expect_event() {  # kind state
  jq -e -s --arg k "$1" --arg s "$2" 'any(.[]; .kind == $k and (.state // "") == $s)' \
    "$COVE_HOME/events.jsonl" >/dev/null
}
wait_for 5 "deleted event" jq -e -s 'any(.[]; .kind == "deleted")' "$COVE_HOME/events.jsonl"
for pair in "created stopped" "state starting" "state running" "agent-connected starting" \
            "state stopping" "state stopped"; do
  # shellcheck disable=SC2086
  expect_event $pair || fail "no event '$pair' in: $(cat "$COVE_HOME/events.jsonl")"
done
kill "$EVENTS_PID"

log "SIGTERM stops coved cleanly and removes its socket"
kill -TERM "$COVED_PID"
rc=0
wait "$COVED_PID" || rc=$?
COVED_PID=""
[ $rc -eq 0 ] || fail "coved exited $rc on SIGTERM"
[ ! -e "$COVE_HOME/coved.sock" ] || fail "socket left after SIGTERM"

log "cove starts coved when it is not running, and says so"
expect_fail "COVE_NO_AUTOSTART=1" cove list
out=$(COVE_NO_AUTOSTART=0 cove list 2>&1) || fail "autostart failed: $out"
grep -q "coved was not running; started it" <<<"$out" || fail "autostart not reported: $out"
COVED_PID=$(cat "$COVE_HOME/coved.lock")
cove list >/dev/null

log "a home too deep for unix socket paths is refused with a reason"
deep="$COVE_HOME/$(printf 'd%.0s' $(seq 100))"
out=$(COVE_HOME=$deep coved 2>&1) && fail "coved accepted $deep"
grep -q "unix sockets allow 103" <<<"$out" || fail "unclear error for a deep home: $out"
log "PASS lifecycle"
