#!/usr/bin/env bash
# A machine as a container host (containerd runtime): its containerd socket
# forwarded to the host and used by the host's ctr, exec with status, stdin
# and stderr, 100 concurrent connections, the agent killed and back without a
# restart, logs, copy, and a reverse socket.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
CTR=${COVE_CTR:-$COVE_BIN/../test-tools/ctr}
[ -x "$CTR" ] || "$COVE_SOURCE/tests/tools/fetch-ctr" "$CTR"
start_coved

name=ct
sock="$COVE_HOME/machines/$name/containerd.sock"
log "create with a reverse socket to the host's own forward of containerd"
cove create "$name" "${MACHINE_FLAGS[@]}" \
  --reverse-socket "loop=$sock:/run/cove-test/host-containerd.sock" >/dev/null
[ ! -e "$sock" ] || fail "socket exists before the machine runs"
cove start "$name"
[ "$(machine_field "$name" .state)" = running ] || fail "not running"
[ "$(machine_field "$name" .sockets.containerd)" = "$sock" ] || fail "sockets: $(machine_field "$name" .sockets)"
[ "$(machine_field "$name" '.services[] | select(.name=="containerd") | .state')" = ready ] ||
  fail "services: $(machine_field "$name" .services)"
[ -S "$sock" ] || fail "no socket at $sock"
[ "$(stat -c %a "$sock")" = 600 ] || fail "socket mode $(stat -c %a "$sock")"
qemu_pid=$(machine_field "$name" .pid)

log "ctr on the host through the forwarded socket"
# grep -c reads to the end: with -q, ctr could die of SIGPIPE under pipefail.
ctr_answers() { "$CTR" --address "$1" version 2>/dev/null | grep -c 'Server:' >/dev/null; }
ctr_answers "$sock" || fail "ctr version: $("$CTR" --address "$sock" version 2>&1)"
tar=$(test_image_tar)
"$CTR" --address "$sock" images import "$tar" >/dev/null
"$CTR" --address "$sock" images ls -q | grep -cx "$TEST_IMAGE_REF" >/dev/null || fail "image not imported"

log "exec: output, stderr apart, exit status, stdin"
[ "$(cove exec "$name" -- ctr run --rm "$TEST_IMAGE_REF" t-echo echo hi)" = hi ] || fail "ctr run in guest"
rc=0
out=$(cove exec "$name" -- sh -c 'echo out; echo err >&2; exit 7' 2>"$COVE_HOME/err") || rc=$?
[ $rc = 7 ] || fail "exit status $rc, want 7"
[ "$out" = out ] && [ "$(cat "$COVE_HOME/err")" = err ] || fail "stdout '$out' stderr '$(cat "$COVE_HOME/err")'"
[ "$(head -c 3000000 /dev/urandom | tee "$COVE_HOME/rand" | cove exec "$name" -- sha256sum | cut -d' ' -f1)" = \
  "$(sha256sum <"$COVE_HOME/rand" | cut -d' ' -f1)" ] || fail "stdin arrived changed"
expect_fail "nosuch-command" cove exec "$name" -- nosuch-command
rc=0; cove exec "$name" -- nosuch-command 2>/dev/null || rc=$?
[ $rc = 127 ] || fail "missing command exit $rc, want 127"
rc=0; cove exec -n "$name" -- sh -c 'kill -TERM $$' || rc=$?
[ $rc = 143 ] || fail "killed command exit $rc, want 143"

log "a detached container started from the host runs"
cove exec "$name" -- sh -c 'mkdir -p /run/t-rootfs && ctr images mount --rw cove.test/busybox:latest /run/t-rootfs >/dev/null'
"$CTR" --address "$sock" run -d --null-io --rootfs /run/t-rootfs t-detached /bin/sleep 300
wait_for 10 "the detached task to run" sh -c "'$CTR' --address '$sock' tasks ls | grep -c 't-detached.*RUNNING'"

log "100 concurrent connections through the forwarded socket"
layer=$("$CTR" --address "$sock" content ls -q | sed -n 1p)  # sed reads to the end: head -1 could leave ctr to die of SIGPIPE under pipefail
want=$("$CTR" --address "$sock" content get "$layer" | sha256sum | cut -d' ' -f1)
mkdir -p "$COVE_HOME/conc"
pids=()
for i in $(seq 1 100); do
  if [ $((i % 5)) = 0 ]; then
    ( "$CTR" --address "$sock" content get "$layer" | sha256sum | cut -d' ' -f1 >"$COVE_HOME/conc/$i" ) &
  else
    ( "$CTR" --address "$sock" version | grep -c 'Version:' >"$COVE_HOME/conc/$i" ) &
  fi
  pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: coved runs in the background too
for i in $(seq 1 100); do
  got=$(cat "$COVE_HOME/conc/$i")
  if [ $((i % 5)) = 0 ]; then
    [ "$got" = "${want#sha256:}" ] || [ "sha256:$got" = "$layer" ] || fail "connection $i: content digest $got"
  else
    [ "$got" = 2 ] || fail "connection $i: version answered '$got'"
  fi
done

log "reverse socket: the guest reaches a host socket"
cove exec "$name" -- ctr --address /run/cove-test/host-containerd.sock version | grep -c 'Server:' >/dev/null ||
  fail "reverse socket did not answer"

log "logs: console and containerd"
cove logs "$name" | grep -c "cove-init" >/dev/null || fail "console log"
cove logs "$name" --service containerd -n 5 | grep -c . >/dev/null || fail "containerd log empty"
expect_fail "unknown service" cove logs "$name" --service nosuch

log "copy: a directory to the guest and back"
mkdir -p "$COVE_HOME/src/sub"
echo one >"$COVE_HOME/src/a.txt"
head -c 100000 /dev/urandom >"$COVE_HOME/src/sub/b.bin"
cove copy "$COVE_HOME/src" "$name:/root/copied"
[ "$(cove exec "$name" -- cat /root/copied/a.txt)" = one ] || fail "copy to guest"
cove copy "$name:/root/copied" "$COVE_HOME/back"
diff -r "$COVE_HOME/src" "$COVE_HOME/back" || fail "copy round trip differs"
expect_fail "exactly one side" cove copy "$COVE_HOME/src" "$COVE_HOME/x"

log "kill cove-agent in the guest: it comes back, the socket serves again, no restart"
begin=$(date +%s.%N)
# The exec dies with the agent it runs under; coved notices the new agent's
# hello and ends the old session.
cove exec "$name" -- sh -c 'kill -9 $(pidof cove-agent)' >/dev/null 2>&1 || true
wait_for 5 "the forwarded socket to answer after the agent was killed" ctr_answers "$sock"
log "socket answered again $(awk -v b="$begin" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - b }') s after the kill"
[ "$(machine_field "$name" .pid)" = "$qemu_pid" ] || fail "qemu was restarted"
[ "$(machine_field "$name" .state)" = running ] || fail "state after agent kill: $(machine_field "$name" .state)"
"$CTR" --address "$sock" tasks ls | grep -c 't-detached.*RUNNING' >/dev/null || fail "the container did not survive"

log "stop: the socket goes away with the machine"
cove stop "$name"
[ ! -e "$sock" ] || fail "socket left after stop"
[ "$(machine_field "$name" .sockets)" = "{}" ] || fail "sockets listed after stop"
cove delete "$name"
