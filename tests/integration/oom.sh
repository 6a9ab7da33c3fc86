#!/usr/bin/env bash
# OOM kills: a container over its -m limit and a machine out of memory each
# become an oom-kill event that names the process, the limit and the fix; the
# control path survives (the agent answers, the machine stays running);
# Machine.oom_kills has them, once each, also after coved restarts. As an
# ordinary user (as-user.sh re-runs it as cove-test when started as root).
if [ "$(id -u)" = 0 ]; then exec bash "$(dirname "$0")/as-user.sh" "$0"; fi
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
command -v docker >/dev/null || { log "no docker CLI on this host; skipping"; exit 77; }
export DOCKER_CONFIG="$COVE_HOME/docker-config"
start_coved

name=oom
cove create "$name" "${MACHINE_FLAGS[@]}" --runtime docker >/dev/null
events="$COVE_HOME/events.jsonl"
cove events "$name" --json >"$events" &
events_pid=$!
# The readable form too (a kill is its summary, then the fix), subscribed
# before anything happens.
cove events "$name" >"$COVE_HOME/events.txt" 2>&1 &
readable_pid=$!
cove start "$name" >/dev/null
DOCKER_HOST="unix://$(machine_field "$name" .sockets.docker)"
export DOCKER_HOST
docker load -i "$(test_image_tar)" >/dev/null

log "memory the guest frees goes back to the host (balloon free page reporting)"
qemu_rss_mib() { awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$(machine_field "$name" .pid)/status"; }
cove exec "$name" -- sh -c 'mkdir -p /run/fill && mount -t tmpfs -o size=400m fill /run/fill &&
  dd if=/dev/zero of=/run/fill/x bs=1M count=384 2>/dev/null'
filled=$(qemu_rss_mib)
cove exec "$name" -- sh -c 'rm /run/fill/x && umount /run/fill'
rss_dropped() { local rss; rss=$(qemu_rss_mib); echo "RSS $rss MiB"; [ "$rss" -le $((filled - 256)) ]; }
wait_for 30 "qemu's RSS to drop 256 MiB below the $filled MiB it had with 384 MiB filled" rss_dropped
log "qemu's RSS: $filled MiB filled, $(qemu_rss_mib) MiB after the free"

oom_event() {  # oom_event JQ-CONDITION: an oom-kill event that matches
  jq -e -s "map(select(.kind == \"oom-kill\" and ($1))) | length > 0" "$events" >/dev/null
}

log "a container with -m 64m filling a tmpfs exits 137, and an event names it with its limit"
rc=0
docker run --name hog -m 64m --memory-swap 64m --tmpfs /fill:size=256m "$TEST_IMAGE_REF" \
  sh -c 'dd if=/dev/zero of=/fill/x bs=1M count=200' >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "the hog exited $rc, not 137"
exited=$SECONDS
wait_for 2 "an oom-kill event naming container hog with its 64 MiB limit" oom_event \
  '.oom_kill.container_name == "hog" and .oom_kill.scope == "cgroup" and .oom_kill.limit_bytes == 67108864'
log "the event came $((SECONDS - exited)) s after docker run returned"
jq -r 'select(.kind == "oom-kill") | .message' "$events" | grep -q "container hog hit its 64MiB limit" ||
  fail "message: $(jq -r 'select(.kind == "oom-kill") | .message' "$events")"
jq -r 'select(.kind == "oom-kill") | .oom_kill.fix' "$events" | grep -q "docker run -m" ||
  fail "no fix in: $(grep oom-kill "$events")"

log "a machine-wide OOM: tail /dev/zero is killed, the agent and dockerd live on"
rc=0
cove exec "$name" -- sh -c 'tail /dev/zero' >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "tail /dev/zero ended with $rc, not 137 (killed)"
wait_for 5 "a machine-wide oom-kill event naming tail" oom_event \
  '.oom_kill.scope == "machine" and .oom_kill.process == "tail" and .oom_kill.machine_memory_bytes > 0'
jq -r 'select(.kind == "oom-kill" and .oom_kill.scope == "machine") | .oom_kill.fix' "$events" |
  grep -q "cove stop $name && cove set $name --memory 2GiB" || fail "fix: $(grep machine "$events")"
[ "$(cove exec "$name" -- echo alive)" = alive ] || fail "the agent does not answer after the OOM"
[ "$(machine_field "$name" .state)" = running ] || fail "state: $(machine_field "$name" .state)"
docker ps >/dev/null || fail "dockerd did not survive the machine-wide OOM"
kill "$readable_pid" 2>/dev/null || true
grep -q "oom-kill  machine $name ran out" "$COVE_HOME/events.txt" ||
  fail "readable events: $(cat "$COVE_HOME/events.txt")"
grep -q "fix: give it more" "$COVE_HOME/events.txt" || fail "no fix line: $(cat "$COVE_HOME/events.txt")"

log "cove doctor names tcg emulation, an arm64 container under binfmt and the killed container"
arm_tar="$COVE_HOME/busybox-arm64.tar"
"$COVE_SOURCE/tests/images/make-test-image" "$arm_tar" --arch arm64 --name cove.test/busybox-arm64:latest
docker load -i "$arm_tar" >/dev/null
docker run -d --name armed --platform linux/arm64 cove.test/busybox-arm64:latest sleep 600 >/dev/null
wait_for 20 "the agent to report the emulated container" sh -c \
  "cove inspect $name --json | jq -e '.emulated | map(select(.container_name == \"armed\")) | length > 0'"
doctor="$COVE_HOME/doctor.json"
cove doctor "$name" --json >"$doctor" || fail "cove doctor exited $? with: $(cat "$doctor")"
finding() {  # finding JQ-CONDITION: a finding with a fix matches
  jq -e "map(select(($1) and .fix != \"\")) | length > 0" "$doctor" >/dev/null ||
    fail "no finding where $1 in: $(cat "$doctor")"
}
finding '.subject == "host" and (.message | test("tcg"))'
finding '.subject == "container armed in oom" and (.message | test("arm64.*binfmt")) and (.fix | test("amd64"))'
finding '.subject == "container hog in oom" and (.message | test("OOM kill")) and (.fix | test("docker run -m"))'
cove doctor "$name" | grep -q "^\[warning\] container armed in oom: runs arm64" || fail "readable doctor: $(cove doctor "$name")"
docker rm -f armed >/dev/null

log "the machine's status: its kills, memory and pressure figures"
[ "$(machine_field "$name" '.oom_kills | length')" -ge 2 ] || fail "oom_kills: $(machine_field "$name" .oom_kills)"
# The cgroups' counters (memory.events) saw the same kills as the log: none
# is told again as one the log missed.
[ "$(machine_field "$name" '[.oom_kills[] | select(.unlogged_count)] | length')" = 0 ] ||
  fail "kills told twice, from the counters: $(machine_field "$name" .oom_kills)"
[ "$(machine_field "$name" '.guest.mem_total')" -gt 0 ] || fail "guest: $(machine_field "$name" .guest)"
machine_field "$name" '.guest.psi_some_avg10' | grep -Eq '^[0-9.]+$' ||
  fail "no PSI in: $(machine_field "$name" .guest)"
[ "$(machine_field "$name" '.guest.disk_total')" -gt 0 ] || fail "no disk use: $(machine_field "$name" .guest)"

log "a restarted coved re-adopts the machine: the kills are kept, not told again"
before=$(machine_field "$name" '.oom_kills | length')
kill "$events_pid" 2>/dev/null || true
stop_coved
start_coved
cove events "$name" --json >"$events" &
events_pid=$!
wait_for 60 "the agent to reconnect" sh -c "[ \"\$(cove exec $name -- echo back)\" = back ]"
sleep 1
[ "$(machine_field "$name" '.oom_kills | length')" = "$before" ] ||
  fail "kills after the coved restart: $(machine_field "$name" .oom_kills)"
oom_event 'true' && fail "a replayed kill was told again: $(cat "$events")"
kill "$events_pid" 2>/dev/null || true

cove stop "$name" >/dev/null
[ "$(machine_field "$name" '.oom_kills | length')" = 0 ] || fail "kills outlived the boot"
exit 0
