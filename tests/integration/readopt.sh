#!/usr/bin/env bash
# coved can die (kill -9) without taking machines with it: qemu runs in its
# own session, and a new coved re-adopts the running machine.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved
cove create dev "${MACHINE_FLAGS[@]}"
cove start dev
pid=$(machine_field dev .pid)

log "kill -9 coved"
kill -9 "$COVED_PID"
wait "$COVED_PID" 2>/dev/null || true
COVED_PID=""
kill -0 "$pid" || fail "qemu died with coved"

start_coved
[ "$(machine_field dev .pid)" = "$pid" ] || fail "pid changed"
wait_for 10 "agent to reconnect" sh -c "cove inspect dev --json | jq -e '.state == \"running\" and .guest.agent_version != null'"
log "re-adopted qemu $pid"
cove stop dev
[ -z "$(our_qemus)" ] || fail "qemu left after stop"
[ "$(machine_field dev .state)" = stopped ] || fail "not stopped"
cove delete dev
log "PASS readopt"
