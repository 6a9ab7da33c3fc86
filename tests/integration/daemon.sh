#!/usr/bin/env bash
# coved as a login service and what it finds at startup:
#  - socket activation (sd_listen_fds) through systemd-socket-activate, and a
#    clear refusal of a socket that is not coved.sock;
#  - `cove daemon install|status|uninstall` without a user systemd (as in CI);
#  - `cove daemon start|stop` acting on coved directly;
#  - autostart: machines marked autostart start with the first coved since
#    boot, and a machine the user stopped stays stopped when coved restarts;
#  - startup repair: a corrupt machine.json, leftovers of an interrupted
#    create, delete and write, stale sockets and pid files.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
command -v systemd-socket-activate >/dev/null || fail "systemd-socket-activate is missing (Debian: systemd)"

log "socket activation"
systemd-socket-activate -E COVE_HOME -l "$COVE_HOME/coved.sock" coved >>"$COVE_HOME/coved.stderr.log" 2>&1 &
COVED_PID=$!
wait_for 10 "the activated coved" cove list
grep -q "socket-activated" "$COVE_HOME/coved.log" || fail "coved did not take the activated socket"
[ "$(cat "$COVE_HOME/coved.lock")" = "$COVED_PID" ] || fail "coved is not the activated process"
stop_coved
rm -f "$COVE_HOME/coved.sock"
systemd-socket-activate -E COVE_HOME -l "$COVE_HOME/wrong.sock" coved >>"$COVE_HOME/activate.log" 2>&1 &
activator=$!
wait_for 5 "the activator to listen" test -S "$COVE_HOME/wrong.sock"
socat -u /dev/null UNIX-CONNECT:"$COVE_HOME/wrong.sock" 2>/dev/null || true
wait_for 10 "coved to refuse a foreign socket" grep -q "none listens at $COVE_HOME/coved.sock" "$COVE_HOME/activate.log"
kill "$activator" 2>/dev/null || true
wait "$activator" 2>/dev/null || true
rm -f "$COVE_HOME/wrong.sock"

log "cove daemon install / status / uninstall without a user systemd"
export XDG_CONFIG_HOME="$COVE_HOME/xdg"
unset XDG_RUNTIME_DIR
out=$(cove daemon install)
grep -q "no systemd user instance" <<<"$out" || fail "install does not say there is no user systemd: $out"
unit="$XDG_CONFIG_HOME/systemd/user/coved.service"
socket_unit="$XDG_CONFIG_HOME/systemd/user/coved.socket"
grep -qx "ExecStart=$COVE_BIN/coved" "$unit" || fail "coved.service runs the wrong coved: $(cat "$unit")"
grep -qx "Environment=COVE_HOME=$COVE_HOME" "$unit" || fail "coved.service has the wrong home"
grep -qx "ListenStream=$COVE_HOME/coved.sock" "$socket_unit" || fail "coved.socket listens elsewhere"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$socket_unit" "$unit" 2>&1 | grep -v "^$" | grep -iv "not found\|bad unit file setting\|Failed to" >&2 || true
fi
status=$(cove daemon status --json)
jq -e '.installed == true and .manager_available == false and .coved_pid == 0' <<<"$status" >/dev/null ||
  fail "daemon status: $status"
cove daemon status | grep -q "no systemd user instance" || fail "status does not say there is no user systemd"
cove daemon uninstall | grep -q "removed $unit" || fail "uninstall did not remove $unit"
[ ! -e "$unit" ] && [ ! -e "$socket_unit" ] || fail "unit files left after uninstall"

log "cove daemon start / stop, directly"
cove daemon start | grep -q "coved is running" || fail "cove daemon start"
COVED_PID=$(cat "$COVE_HOME/coved.lock")
cove list >/dev/null
cove daemon status | grep -q "running (pid $COVED_PID)" || fail "status does not show coved $COVED_PID"
cove daemon stop | grep -q "stopped coved (pid $COVED_PID)" || fail "cove daemon stop"
# (Not `kill -0`: coved is not our child, and a zombie still answers it.)
[ "$(cove daemon status --json | jq .coved_pid)" = 0 ] || fail "coved still holds the lock after cove daemon stop"
cove daemon stop | grep -q "not running" || fail "a second stop should say coved is not running"
COVED_PID=""

log "autostart"
start_coved
cove create auto "${MACHINE_FLAGS[@]}" --autostart
cove create manual "${MACHINE_FLAGS[@]}"
cove create broken "${MACHINE_FLAGS[@]}"
[ "$(machine_field auto .autostart)" = true ] || fail "autostart not recorded"
stop_coved
rm -f "$COVE_HOME/boot-id"  # as if the host had just booted
start_coved
wait_for 120 "auto to start by itself" sh -c "cove inspect auto --json | jq -e '.state == \"running\"'"
[ "$(machine_field manual .state)" = stopped ] || fail "a machine without autostart was started"
cove stop auto
stop_coved
# The same boot: no autostart. coved decides that before its loop serves
# the first call, so start_coved's `cove list` already sees the outcome.
start_coved
[ "$(machine_field auto .state)" = stopped ] || fail "a machine the user stopped was started again"
cove set auto --no-autostart | grep -q "autostart off" || fail "cove set --no-autostart"
stop_coved

log "startup repair"
m="$COVE_HOME/machines"
echo '{"name": "broken", "state": ' >"$m/broken/machine.json"
mkdir -p "$m/.creating-half" "$m/.deleting-gone"
touch "$m/manual/.tmp-machine.json-4242-0" "$m/manual/qemu.pid"
socat UNIX-LISTEN:"$m/manual/qmp.sock",unlink-close=0 /dev/null &
wait_for 5 "a stale qmp.sock" test -S "$m/manual/qmp.sock"
kill $! 2>/dev/null || true
wait $! 2>/dev/null || true
manual_before=$(jq -c 'del(.state)' "$m/manual/machine.json")
start_coved
[ "$(machine_field broken .state)" = error ] || fail "a corrupt machine.json is not reported as error"
machine_field broken .error | grep -q "machine.json is unreadable" || fail "the error does not name machine.json"
machine_field broken .error | grep -q "cove delete broken" || fail "the error does not say what to do"
[ "$(machine_field manual .state)" = stopped ] || fail "the healthy machine is not stopped"
[ "$(jq -c 'del(.state)' "$m/manual/machine.json")" = "$manual_before" ] || fail "the healthy machine.json changed"
for left in .creating-half .deleting-gone manual/.tmp-machine.json-4242-0 manual/qemu.pid manual/qmp.sock; do
  [ ! -e "$m/$left" ] || fail "$left survived startup"
done
expect_fail "cannot start" cove start broken
cove delete broken
cove start manual
cove stop manual
cove delete manual
cove delete auto
log "PASS daemon"
