#!/usr/bin/env bash
# Images: import into the cache, list, use by name, refuse to delete while a
# machine uses it, delete. Bad build requests are refused before any work.
# (The build itself runs through coved in tests/run.sh whenever the recipe
# changes: that is how the test image is made.)
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved

log "import"
cove image import "$COVE_TEST_IMAGE" --name test-img
list=$(cove image list --json)
[ "$(jq -r '.[0].name' <<<"$list")" = test-img ] || fail "image list: $list"
[ "$(jq -r '.[0].arch' <<<"$list")" = x86_64 ] || fail "arch: $list"
jq -e '.[0].sha256["rootfs.img"] | length == 64' <<<"$list" >/dev/null || fail "digest: $list"
cove image list | grep -q '^test-img' || fail "table: $(cove image list)"
expect_fail "exists" cove image import "$COVE_TEST_IMAGE" --name test-img
expect_fail "no image at" cove image import /nonexistent

log "use by name; delete refused while used"
cove create uses-it --image test-img --memory 512MiB --disk 2
[ "$(machine_field uses-it .image)" = "$COVE_HOME/images/test-img" ] || fail "image path"
[ "$(cove image list --json | jq -r '.[0].used_by[0]')" = uses-it ] || fail "used_by"
expect_fail "use image test-img" cove image delete test-img
expect_fail "no image named" cove image delete nosuch
expect_fail "invalid image name" cove image delete ..

log "build requests that cannot work are refused at once"
expect_fail "unknown architecture" cove image build --arch sparc
expect_fail "already exists" cove image build --output "$COVE_HOME/images/test-img"
expect_fail "use the image" cove image build --output "$COVE_HOME/images/test-img" --force

log "interrupting cove image build stops the build and leaves nothing"
cove image build --output "$COVE_HOME/cancelled" 2>"$COVE_HOME/build.err" &
build_pid=$!
wait_for 60 "the build to start" grep -q "==> " "$COVE_HOME/build.err"
# (Background jobs of a script ignore SIGINT, so TERM stands in for Ctrl-C.)
kill -TERM "$build_pid"
wait "$build_pid" 2>/dev/null || true
wait_for 30 "the recipe to stop" sh -c "! pgrep -f '[b]uild-image.*$COVE_HOME/cancelled' >/dev/null"
wait_for 10 "its temporary output to go" sh -c "! ls -d '$COVE_HOME'/cancelled* 2>/dev/null"
# The builder is free again (refused for the bad arch, not for being busy).
expect_fail "unknown architecture" cove image build --arch sparc

log "delete"
cove delete uses-it
cove image delete test-img
[ "$(cove image list --json)" = "[]" ] || fail "image left: $(cove image list --json)"
[ ! -e "$COVE_HOME/images/test-img" ] || fail "image directory left"
log "PASS images"
