#!/usr/bin/env bash
# Resize: `cove set --cpus --memory --disk` on a stopped machine, seen by the
# guest at the next start (nproc, /proc/meminfo, the root file system grown
# with its files intact); a shrink and a change of a running machine are
# refused and change nothing; `cove start NAME --memory` on a stopped machine
# applies, then starts; inspect and the events show the new sizes.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved
cove events r1 --json >"$COVE_HOME/events.jsonl" &
EVENTS_PID=$!
mem_kib() { cove exec r1 -- awk '/^MemTotal/ {print $2}' /proc/meminfo; }
root_kib() { cove exec r1 -- df -k / | awk 'NR == 2 {print $2}'; }

cove create r1 --image "$COVE_TEST_IMAGE" --cpus 1 --memory 768MiB --disk 4 --mount none >/dev/null
cove start r1 2>/dev/null || fail "start r1"
[ "$(cove exec r1 -- nproc)" = 1 ] || fail "nproc before: $(cove exec r1 -- nproc)"
before_mem=$(mem_kib)
wait_for 30 "the root file system to reach the 4 GiB disk" eval '[ "$(root_kib)" -gt 3500000 ]'
before_root=$(root_kib)
cove exec r1 -- sh -c 'echo kept > /var/lib/resize-marker && sync'
log "before: 1 CPU, MemTotal $before_mem kB, root $before_root kB"

log "a running machine: refused, nothing changes"
expect_fail "only while it is stopped" cove set r1 --memory 1GiB
expect_fail "only while it is stopped" cove set r1 --cpus 2 --disk 6
expect_fail "already running\|only while it is stopped" cove start r1 --memory 1GiB
[ "$(machine_field r1 .memory)" = $((768 << 20)) ] || fail "memory changed: $(machine_field r1 .memory)"
[ "$(machine_field r1 .cpus)" = 1 ] || fail "cpus changed"
cove stop r1 >/dev/null

log "bad sizes and a shrink: refused, nothing changes"
expect_fail "a disk only grows" cove set r1 --disk 3
expect_fail "at least 1 CPU" cove set r1 --cpus 0
expect_fail "more than this host" cove set r1 --cpus 999
expect_fail "more than zero" cove set r1 --memory 0
expect_fail "not a size" cove set r1 --memory lots
expect_fail "too small" cove set r1 --memory 1MiB
expect_fail "more than this host" cove set r1 --memory 100TiB
expect_fail "a disk only grows" cove set r1 --cpus 2 --disk 3  # all or nothing
[ "$(machine_field r1 .cpus)" = 1 ] || fail "a refused set changed cpus"
[ "$(machine_field r1 .disk)" = $((4 << 30)) ] || fail "a refused set changed the disk"
[ "$(qemu-img info --output=json "$COVE_HOME/machines/r1/disk.qcow2" | jq '."virtual-size"')" = $((4 << 30)) ] ||
  fail "a refused set grew the disk file"

log "cove set --cpus 2 --memory 1GiB --disk 6"
cove set r1 --cpus 2 --memory 1GiB --disk 6 | grep -q "2 CPUs, 1GiB memory, 6GiB disk" ||
  fail "set output: $(cove set r1 --cpus 2 --memory 1GiB --disk 6)"
[ "$(machine_field r1 .cpus)" = 2 ] && [ "$(machine_field r1 .memory)" = $((1 << 30)) ] &&
  [ "$(machine_field r1 .disk)" = $((6 << 30)) ] || fail "inspect after set: $(cove inspect r1)"
wait_for 5 "the updated event" \
  jq -e -s 'any(.[]; .kind == "updated" and (.message | test("cpus 1 -> 2")) and (.message | test("disk 4GiB -> 6GiB")))' \
  "$COVE_HOME/events.jsonl"
cove start r1 2>/dev/null || fail "start after resize"
[ "$(cove exec r1 -- nproc)" = 2 ] || fail "nproc after: $(cove exec r1 -- nproc)"
after_mem=$(mem_kib)
[ "$after_mem" -gt $((before_mem + 200000)) ] || fail "MemTotal $before_mem -> $after_mem kB"
wait_for 30 "the root file system to grow to the 6 GiB disk" eval '[ "$(root_kib)" -gt 5500000 ]'
[ "$(cove exec r1 -- cat /var/lib/resize-marker)" = kept ] || fail "files lost in the grow"
log "after: 2 CPUs, MemTotal $after_mem kB, root $(root_kib) kB"
cove stop r1 >/dev/null

log "cove start --memory on a stopped machine: applies, then starts"
cove start r1 --memory 1280MiB 2>/dev/null || fail "start --memory"
[ "$(machine_field r1 .memory)" = $((1280 << 20)) ] || fail "memory after start --memory"
[ "$(mem_kib)" -gt "$after_mem" ] || fail "MemTotal after start --memory: $(mem_kib)"
cove stop r1 >/dev/null
kill "$EVENTS_PID" 2>/dev/null || true
log "PASS resize"
