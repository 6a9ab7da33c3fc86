#!/usr/bin/env bash
# Accelerator truth: a hardware accelerator that passes the probe but cannot
# run a real guest. This host's /dev/kvm is such a one (a PVM hypervisor: the
# test guest runs, slowly; a Debian kernel hangs early in its boot). Where the
# probe already sees through it, the cached verdict is set to what a probe
# that passed writes, so the real boot must find out. Then:
#   - a start with --accel auto falls back to tcg within the same start, with
#     its progress phase and its event, and is running within 60 s;
#   - the verdict is cached (found by a real boot) and the next machine boots
#     straight under tcg;
#   - an explicit --accel kvm fails within 30 s and names the cause, and
#     `cove set --accel auto` is the way out;
#   - `cove version --probe` forgets the boot's verdict and probes again.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"

[ -c /dev/kvm ] || { log "SKIP: no /dev/kvm here, so no hardware accelerator to fail"; exit 77; }
# This test's own verdicts, not the user's.
export XDG_CACHE_HOME=$COVE_HOME/xdg-cache
cache=$XDG_CACHE_HOME/cove/accel-$(uname -m).json

start_coved
kvm=$(cove version --json | jq -c '.accels[] | select(.accel == "kvm")')
log "the probe's kvm verdict: $kvm"
if [ "$(jq -r .usable <<<"$kvm")" != true ]; then
  stop_coved
  jq '.auto = 2 | .verdicts |= map(if .accel == 2 then .usable = true | .reason = "" |
        .cpu = (if .cpu == "" then "host,-arch-capabilities" else .cpu end) else . end)' \
    "$cache" >"$cache.new"
  mv "$cache.new" "$cache"
  start_coved
  [ "$(cove version --json | jq -r .auto_accel)" = kvm ] || fail "the edited verdict did not take: $(cove version)"
fi

cove events --json >"$COVE_HOME/events.jsonl" &
EVENTS_PID=$!

log "start with --accel auto: kvm fails, tcg takes over in the same start"
begin=$SECONDS
cove create m1 "${MACHINE_FLAGS[@]}" >/dev/null
if ! cove start m1 2>"$COVE_HOME/start.log"; then
  cat "$COVE_HOME/start.log" >&2
  fail "start m1 failed"
fi
took=$((SECONDS - begin))
cat "$COVE_HOME/start.log" >&2
if [ "$(machine_field m1 .accel)" = kvm ]; then
  log "SKIP: kvm really runs a guest on this host; nothing to fall back from"
  exit 77
fi
log "running after $took s"
[ "$took" -le 60 ] || fail "m1 took $took s to run (bound 60 s)"
grep -q "accel fallback.*kvm unusable here: .*booting again under tcg" "$COVE_HOME/start.log" ||
  fail "no fallback phase in the progress: $(cat "$COVE_HOME/start.log")"
[ "$(machine_field m1 .state)" = running ] || fail "m1 is not running"
[ "$(machine_field m1 .accel)" = tcg ] || fail "m1 accel: $(machine_field m1 .accel)"
reason=$(machine_field m1 .accel_reason)
grep -q "^auto: kvm unusable here: " <<<"$reason" || fail "accel_reason: $reason"
[ "$(machine_field m1 '.accel_verdicts[] | select(.accel == "kvm") | .checked_by')" = boot ] ||
  fail "inspect shows no verdict from the boot: $(machine_field m1 .accel_verdicts)"
wait_for 5 "the accel-fallback event" \
  jq -e -s 'any(.[]; .kind == "accel-fallback" and .machine == "m1" and (.message | test("kvm unusable here")))' \
  "$COVE_HOME/events.jsonl"
[ "$(cove exec m1 -- uname -m)" = x86_64 ] || fail "exec in m1"

log "the verdict is cached, and says a real boot found it"
[ "$(jq -r '.verdicts[] | select(.accel == 2) | "\(.usable) \(.checked_by)"' "$cache")" = "false boot" ] ||
  fail "cache: $(cat "$cache")"
[ "$(jq -r .auto "$cache")" = 4 ] || fail "auto in the cache: $(cat "$cache")"
cove version | grep -q "kvm: unusable: a real boot (machine 'm1') failed: .*(found by a real boot)" ||
  fail "cove version: $(cove version)"

log "a new coved reads it; the next machine boots straight under tcg"
stop_coved
start_coved
[ "$(cove version --json | jq -r .auto_accel)" = tcg ] || fail "auto after a coved restart: $(cove version)"
cove create m2 "${MACHINE_FLAGS[@]}" >/dev/null
begin=$SECONDS
cove start m2 2>"$COVE_HOME/start2.log" || fail "start m2: $(cat "$COVE_HOME/start2.log")"
log "m2 running after $((SECONDS - begin)) s"
! grep -q "accel fallback" "$COVE_HOME/start2.log" || fail "m2 fell back again: $(cat "$COVE_HOME/start2.log")"
grep -q "kvm unusable here: a real boot" "$COVE_HOME/start2.log" ||
  fail "m2's progress does not say why tcg: $(cat "$COVE_HOME/start2.log")"
[ "$(machine_field m2 .accel)" = tcg ] || fail "m2 accel"
cove stop m2 >/dev/null
cove stop m1 >/dev/null

log "--accel kvm: no fallback; fails within 30 s, naming the cause"
cove create m3 "${MACHINE_FLAGS[@]}" --accel kvm >/dev/null
begin=$SECONDS
out=$(cove start m3 2>&1) && fail "m3 started under a kvm that cannot run it: $out"
took=$((SECONDS - begin))
log "m3 failed after $took s: $(tail -n 1 <<<"$out")"
[ "$took" -le 30 ] || fail "m3 took $took s to fail (bound 30 s)"
grep -q "kvm unusable here: " <<<"$out" || fail "m3's error does not name the accelerator: $out"
grep -q "cove set m3 --accel auto" <<<"$out" || fail "m3's error gives no way out: $out"
! grep -q "accel fallback" <<<"$out" || fail "m3 fell back: $out"
[ "$(machine_field m3 .state)" = error ] || fail "m3 state: $(machine_field m3 .state)"
wait_for 10 "m3's qemu to go" eval '[ -z "$(pgrep -f "qemu-system.*$COVE_HOME/machines/m3/")" ]'

log "cove set --accel auto is the way out"
expect_fail "unknown accelerator" cove set m3 --accel fast
expect_fail "hvf is macOS only" cove set m3 --accel hvf
cove set m3 --accel auto | grep -q "accel auto" || fail "set --accel auto"
cove start m3 2>/dev/null || fail "m3 does not start with --accel auto"
[ "$(machine_field m3 .accel)" = tcg ] || fail "m3 accel after set"
cove stop m3 >/dev/null

log "cove version --probe forgets the boot's verdict"
cove version --probe --json >"$COVE_HOME/probe.json"
[ "$(jq -r '.accels[] | select(.accel == "kvm") | .checked_by' "$COVE_HOME/probe.json")" = probe ] ||
  fail "after --probe: $(cat "$COVE_HOME/probe.json")"
kill "$EVENTS_PID" 2>/dev/null || true  # ended with the first coved
log "PASS accel"
