# The walking skeleton: cove start creates and boots "default"; list shows it
# running; stop leaves no qemu; delete leaves no directory; events stream
# every step as JSON lines.
source "$(dirname "$0")/lib.sh"
start_coved

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
for pair in "created stopped" "state starting" "state running" "agent-connected running" \
            "state stopping" "state stopped"; do
  # shellcheck disable=SC2086
  expect_event $pair || fail "no event '$pair' in: $(cat "$COVE_HOME/events.jsonl")"
done
kill "$EVENTS_PID"
log "PASS lifecycle"
