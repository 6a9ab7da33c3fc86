#!/usr/bin/env bash
# Fault figures for docs/reliability.md, on one tcg VM:
#  - re-adoption: kill -9 coved, start a new one; time from its start until
#    the machine reads running with its agent back, and until a port forward
#    listens again (RUNS times);
#  - qemu death: kill -9 qemu; time from the kill to the error event
#    arriving at a `cove events` client, and to the host port being free (RUNS times,
#    with the on-failure policy bringing the machine back in between).
#
#   COVE_BIN=build/bin COVE_SOURCE=. COVE_TEST_IMAGE=... bench/faults.sh [RUNS]
set -euo pipefail
runs=${1:-5}
source "$(dirname "$0")/../tests/integration/lib.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
listening() { cove ports dev --json | jq -e '.[] | select(.host_port == 18300 and .state == "listening")' >/dev/null; }

start_coved
cove create dev "${MACHINE_FLAGS[@]}" --restart on-failure:100 >/dev/null
cove start dev >/dev/null 2>&1
cove exec dev -- sh -c 'socat TCP-LISTEN:18300,reuseaddr,fork EXEC:cat </dev/null >/dev/null 2>&1 &'
wait_for 10 "forward 18300" listening

agent_ms=() forward_ms=()
for i in $(seq "$runs"); do
  kill -9 "$COVED_PID"
  wait "$COVED_PID" 2>/dev/null || true
  t0=$(now_ms)
  coved >>"$COVE_HOME/coved.stderr.log" 2>&1 &
  COVED_PID=$!
  until cove inspect dev --json 2>/dev/null | jq -e '.state == "running" and .guest.agent_version != null' >/dev/null; do sleep 0.01; done
  t1=$(now_ms)
  until listening 2>/dev/null; do sleep 0.01; done
  t2=$(now_ms)
  agent_ms+=($((t1 - t0))) forward_ms+=($((t2 - t0)))
done
echo "re-adoption, agent back (ms): ${agent_ms[*]}"
echo "re-adoption, forward listening (ms): ${forward_ms[*]}"

event_ms=() port_ms=()
for i in $(seq "$runs"); do
  pid=$(machine_field dev .pid)
  events="$COVE_HOME/events-$i.jsonl"
  # Each event line stamped with its arrival time (ns).
  cove events dev --json | while IFS= read -r line; do echo "$(date +%s%N) $line"; done >"$events" &
  watcher=$!
  sleep 0.3
  t0=$(date +%s%N)
  kill -9 "$pid"
  while ss -ltnH "sport = :18300" | grep -q .; do sleep 0.005; done
  t1=$(date +%s%N)
  until grep -q '"kind":"state".*"state":"error"' "$events"; do sleep 0.01; done
  kill "$watcher" 2>/dev/null || true
  at=$(grep -m1 '"kind":"state".*"state":"error"' "$events" | cut -d' ' -f1)
  event_ms+=($(((at - t0) / 1000000))) port_ms+=($(((t1 - t0) / 1000000)))
  # The policy starts it again; wait for that and for the guest's listener.
  wait_for 120 "the restart" sh -c "cove inspect dev --json | jq -e '.state == \"running\"'"
  cove exec dev -- sh -c 'socat TCP-LISTEN:18300,reuseaddr,fork EXEC:cat </dev/null >/dev/null 2>&1 &'
  wait_for 10 "forward 18300" listening
done
echo "qemu killed -> error event (ms): ${event_ms[*]}"
echo "qemu killed -> host port free (ms): ${port_ms[*]}"
cove stop dev >/dev/null 2>&1
cove delete dev >/dev/null
