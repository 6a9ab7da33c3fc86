#!/usr/bin/env bash
# The default machine of an Apple Silicon user under QEMU, tried on this
# host: an aarch64 machine with the default home mount, as an ordinary user,
# where no virtiofsd runs as the user (Debian 12, and QEMU on macOS), so the
# home goes over 9p. It starts and reads a file in the user's home; a file
# the guest writes there is the user's; `cove inspect` says on the mount, and
# `cove doctor` as a finding with the fix, that host file changes do not wake
# guest watchers over 9p. (as-user.sh re-runs it as cove-test when started
# as root.)
if [ "$(id -u)" = 0 ]; then exec bash "$(dirname "$0")/as-user.sh" "$0"; fi
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
: "${COVE_TEST_IMAGE_AARCH64:?COVE_TEST_IMAGE_AARCH64 must point at an aarch64 image (tests/run.sh builds one)}"
[ -x "$COVE_BIN/cove-agent-aarch64" ] || fail "no $COVE_BIN/cove-agent-aarch64"
unset COVE_VIRTIOFSD
start_coved

greeting="hello from $(id -un)'s home"
echo "$greeting" >"$HOME/greeting.txt"

log "an aarch64 machine with the default home mount, as $(id -un) (uid $(id -u))"
begin=$SECONDS
cove create a64 --arch aarch64 --image "$COVE_TEST_IMAGE_AARCH64" --memory 1GiB --disk 4 >/dev/null
[ "$(machine_field a64 '.mounts[0].host_path')" = "$HOME" ] ||
  fail "the default mount is not the home: $(machine_field a64 .mounts)"
cove start a64 2>"$COVE_HOME/a64.start" || fail "start a64: $(cat "$COVE_HOME/a64.start")"
log "a64 running after $((SECONDS - begin)) s"
type=$(machine_field a64 '.mounts[0].type')
log "the home goes over $type"

out=$(cove exec a64 -- cat "$HOME/greeting.txt" 2>&1) || fail "reading the home in a64: $out"
[ "$out" = "$greeting" ] || fail "a64 read '$out' from the home, not '$greeting'"
cove exec a64 -- sh -c "echo from-guest >'$HOME/from-guest.txt'" || fail "writing to the home in a64"
[ "$(cat "$HOME/from-guest.txt")" = from-guest ] || fail "the guest's write did not reach the host"
[ "$(stat -c %u "$HOME/from-guest.txt")" = "$(id -u)" ] ||
  fail "the guest's file belongs to uid $(stat -c %u "$HOME/from-guest.txt"), not $(id -u)"

if [ "$type" = 9p ]; then
  log "9p: inspect and doctor say host changes do not wake guest watchers"
  [ "$(machine_field a64 '.mounts[0].host_events')" = false ] ||
    fail "host_events on a 9p mount: $(machine_field a64 '.mounts[0]')"
  machine_field a64 '.mounts[0].host_events_note' | grep -q "poll" ||
    fail "no note on the 9p mount: $(machine_field a64 '.mounts[0]')"
  doctor=$(cove doctor a64 --json) || true
  finding=$(jq -c '.[] | select(.message | contains("is 9p"))' <<<"$doctor")
  [ -n "$finding" ] || fail "cove doctor has no 9p finding: $doctor"
  jq -e '.severity == "warning" and (.fix | contains("virtiofsd")) and (.fix | contains("poll"))' \
    <<<"$finding" >/dev/null || fail "the 9p finding: $finding"
  log "  doctor: $(jq -r .message <<<"$finding")"
else
  log "this host has a virtiofsd that runs as $(id -un): the 9p findings are not checked here"
  [ "$(machine_field a64 '.mounts[0].host_events')" = true ] || fail "host_events on virtiofs"
fi
cove stop a64 >/dev/null
log "PASS foreign_home"
