#!/usr/bin/env bash
# Faults a running machine must survive (docs/reliability.md):
#  - kill -9 coved while a forwarded connection streams: the host client is
#    not left hanging, the restarted coved re-adopts the machine, and new
#    connections work;
#  - kill -9 qemu: the machine is in error within 1 s with the reason, an
#    event goes out and the host port is free;
#  - the on-failure restart policy brings a killed machine back, up to its
#    limit;
#  - a guest kernel panic ends in error, named, with the console's lines.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved
cove create dev "${MACHINE_FLAGS[@]}" --restart on-failure:1
cove start dev
pid=$(machine_field dev .pid)

# A guest server that streams forever, and a host client reading it through
# cove's automatic forward.
cove exec dev -- sh -c 'socat TCP-LISTEN:18200,reuseaddr,fork SYSTEM:"cat /dev/zero" </dev/null >/dev/null 2>&1 &'
wait_for 10 "forward 18200" sh -c "cove ports dev --json | jq -e '.[] | select(.host_port == 18200 and .state == \"listening\")'"
socat -u TCP:127.0.0.1:18200 OPEN:/dev/null,wronly &
reader=$!
wait_for 10 "the host reader's connection through the forward" sh -c \
  "cove ports dev --json | jq -e '.[] | select(.host_port == 18200 and .connections >= 1)'"
kill -0 "$reader" || fail "the host reader did not stream"
wait_for 10 "18200 on the network route" sh -c \
  "cove ports dev --json | jq -e '.[] | select(.host_port == 18200 and .route == \"network\")'"
qemu_lanes() { ss -Hltnp | grep -c "pid=$pid," || true; }
lanes_before=$(qemu_lanes)
[ "$lanes_before" -ge 1 ] || fail "qemu listens on no lane"

log "kill -9 coved while the forwarded connection streams"
kill -9 "$COVED_PID"
wait "$COVED_PID" 2>/dev/null || true
COVED_PID=""
# The reader must end on its own (coved's end of the connection is gone).
for _ in $(seq 50); do kill -0 "$reader" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$reader" 2>/dev/null; then fail "the host reader still hangs 5 s after coved died"; fi
kill -0 "$pid" || fail "qemu died with coved"
# No coved: a new connection is refused at once instead of hanging.
if timeout 2 curl -s -o /dev/null http://127.0.0.1:18200/; then fail "port 18200 answered without coved"; fi
rc=0; timeout 2 socat -u UNIX-CONNECT:"$COVE_HOME/machines/dev/containerd.sock" /dev/null </dev/null || rc=$?
[ "$rc" != 124 ] || fail "containerd.sock hung while coved was down"

t0=$(date +%s%N)
start_coved
wait_for 10 "re-adoption" sh -c "cove inspect dev --json | jq -e '.state == \"running\" and .guest.agent_version != null'"
t1=$(date +%s%N)
wait_for 10 "forward 18200 after re-adoption" sh -c "cove ports dev --json | jq -e '.[] | select(.host_port == 18200 and .state == \"listening\")'"
t2=$(date +%s%N)
[ "$(machine_field dev .pid)" = "$pid" ] || fail "pid changed"
log "re-adopted: agent back after $(((t1 - t0) / 1000000)) ms, forward 18200 after $(((t2 - t0) / 1000000)) ms (from coved start)"
got=$( (timeout 5 socat -u TCP:127.0.0.1:18200 - 2>/dev/null || true) | head -c 1048576 | wc -c)
[ "$got" = 1048576 ] || fail "no stream through the forward after re-adoption (got $got bytes)"
cove exec dev -- true || fail "exec after re-adoption"
# The old coved's lanes are gone and the new one made its own: as many as
# before, not twice as many.
wait_for 10 "18200 back on the network route" sh -c \
  "cove ports dev --json | jq -e '.[] | select(.host_port == 18200 and .route == \"network\")'"
[ "$(qemu_lanes)" = "$lanes_before" ] || fail "qemu has $(qemu_lanes) lanes after re-adoption, $lanes_before before"
[ -S "$COVE_HOME/machines/dev/containerd.sock" ] || fail "containerd.sock not back"
timeout 10 "$COVE_CTR" --address "$COVE_HOME/machines/dev/containerd.sock" version >/dev/null ||
  fail "ctr through containerd.sock after re-adoption"

log "kill -9 qemu (adopted, so not coved's child)"
cove events dev --json --snapshot >"$COVE_HOME/events.jsonl" &
events=$!
# The snapshot comes first: once it is there, the watch is live.
wait_for 10 "the events watch" grep -q '"kind":"snapshot"' "$COVE_HOME/events.jsonl"
t0=$(date +%s%N)
kill -9 "$pid"
state=""
while [ $(($(date +%s%N) - t0)) -lt 1000000000 ]; do
  state=$(machine_field dev .state)
  [ "$state" = error ] && break
  sleep 0.02
done
t1=$(date +%s%N)
[ "$state" = error ] || fail "state is '$state' 1 s after qemu was killed, not error"
log "error state $(((t1 - t0) / 1000000)) ms after kill -9 qemu: $(machine_field dev .error)"
machine_field dev .error | grep -q "killed or crashed" || fail "error does not say qemu was killed"
machine_field dev .error | grep -q "last console lines" || fail "error has no console lines"
if ss -ltnH "sport = :18200" | grep -q .; then fail "host port 18200 still held after qemu died"; fi
[ ! -e "$COVE_HOME/machines/dev/containerd.sock" ] || fail "containerd.sock left after qemu died"
[ ! -e "$COVE_HOME/machines/dev/qemu.pid" ] || fail "qemu.pid left after qemu died"
jq -e 'select(.kind == "state" and .state == "error")' "$COVE_HOME/events.jsonl" >/dev/null ||
  fail "no state event for the crash: $(cat "$COVE_HOME/events.jsonl")"

log "restart policy on-failure:1 starts it again"
wait_for 90 "the automatic restart" sh -c "cove inspect dev --json | jq -e '.state == \"running\" and .restarts == 1'"
pid2=$(machine_field dev .pid)
[ "$pid2" != "$pid" ] || fail "same pid after the restart"
kill -9 "$pid2"
wait_for 5 "error after the second kill" sh -c "cove inspect dev --json | jq -e '.state == \"error\"'"
machine_field dev .error | grep -q "killed by signal 9" || fail "a child qemu's error names no signal"
# At the limit coved decides at once, arming no timer: the error says so.
wait_for 5 "the restart limit in the error" sh -c "cove inspect dev --json | jq -e '.error | contains(\"not restarted\")'"
[ "$(machine_field dev .state)" = error ] || fail "restarted beyond its limit"
machine_field dev .error | grep -q "not restarted" || fail "error does not say the limit stopped restarts"
cove start dev
[ "$(machine_field dev .restarts)" = 0 ] || fail "a client start did not reset the restart count"
cove set dev --restart never >/dev/null
[ "$(machine_field dev .restart)" = never ] || fail "cove set --restart never"
expect_fail "on-failure:N" cove set dev --restart sometimes
expect_fail "N from 1 to 100" cove set dev --restart on-failure:0
[ "$(machine_field dev .restart)" = never ] || fail "a refused cove set changed the policy"

log "guest kernel panic"
cove exec dev -- sh -c 'echo c >/proc/sysrq-trigger' >/dev/null 2>&1 || true
wait_for 30 "error after the panic" sh -c "cove inspect dev --json | jq -e '.state == \"error\"'"
machine_field dev .error | grep -q "kernel panicked" || fail "a panic is not named: $(machine_field dev .error)"
machine_field dev .error | grep -qi "sysrq\|panic" || fail "no panic lines from the console"
[ "$(machine_field dev .restarts)" = 0 ] || fail "restarted under the never policy"
kill "$events" 2>/dev/null || true
[ -z "$(our_qemus)" ] || fail "qemu left after stop"
for f in qmp.sock agent.sock qemu.pid containerd.sock; do
  [ ! -e "$COVE_HOME/machines/dev/$f" ] || fail "$f left after stop"
done
cove delete dev
log "PASS faults"
