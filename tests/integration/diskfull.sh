#!/usr/bin/env bash
# COVE_HOME out of space (a small tmpfs, filled up): create, start, image
# import and image build fail with an error that says so, and leave nothing
# half-made; once space is free again the same commands work.
#
# Needs root for the tmpfs; it runs in a private mount namespace so the mount
# goes away with the test.
if [ -z "${COVE_DISKFULL_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "diskfull: needs root to mount a tmpfs (CI runs as root)" >&2; exit 77; }
  COVE_DISKFULL_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
# Big enough for a 1 GiB disk limit (checked against the filesystem's size).
mount -t tmpfs -o size=1100m,mode=0700 cove-full "$COVE_HOME"
unmount() {
  local rc=$? pids
  trap - EXIT
  show_logs_unless_shown "$rc"
  stop_coved
  pids=$(our_qemus)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  # qemu holds files in the tmpfs until it is gone.
  for _ in $(seq 50); do [ -z "$(our_qemus)" ] && break; sleep 0.1; done
  umount "$COVE_HOME" && rm -rf "$COVE_HOME"
  exit $rc
}
trap unmount EXIT
FLAGS=(--image "$COVE_TEST_IMAGE" --memory 1GiB --disk 1 --cpus 2)
start_coved
cove create small "${FLAGS[@]}"

log "fill the cove home"
dd if=/dev/zero of="$COVE_HOME/filler" bs=1M 2>/dev/null || true
df -h "$COVE_HOME" | tail -1 >&2
before=$(cd "$COVE_HOME" && find . -path ./filler -prune -o -print | grep -v "coved.log\|boot-id" | sort)

expect_fail "out of space\|No space left" cove create other "${FLAGS[@]}"
[ ! -e "$COVE_HOME/machines/other" ] && [ ! -e "$COVE_HOME/machines/.creating-other" ] ||
  fail "a failed create left a machine directory"
expect_fail "out of space\|No space left" cove start small
[ "$(machine_field small .state)" != running ] || fail "small runs on a full disk?"
[ -z "$(our_qemus)" ] || fail "qemu left after a failed start"
expect_fail "out of space\|No space left" cove image import "$COVE_TEST_IMAGE" --name copy
[ -z "$(ls -A "$COVE_HOME/images")" ] || fail "a failed import left $(ls -A "$COVE_HOME/images")"
expect_fail "out of space\|No space left" cove image build
after=$(cd "$COVE_HOME" && find . -path ./filler -prune -o -print | grep -v "coved.log\|boot-id" | sort)
[ "$before" = "$after" ] || fail "failed commands left files: $(diff <(echo "$before") <(echo "$after"))"
cove list >/dev/null || fail "coved stopped answering on a full disk"

log "free the space: the same commands work"
rm -f "$COVE_HOME/filler"
cove create other "${FLAGS[@]}"
cove start small
cove stop small
cove delete small
cove delete other
log "PASS diskfull"
