#!/usr/bin/env bash
# Bad input gets a clear error and changes nothing; a corrupt machine.json
# is reported while every other machine keeps working.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved

machines_dir="$COVE_HOME/machines"
nothing_created() {
  [ -z "$(find "$machines_dir" -mindepth 1 -maxdepth 1 ! -name good ! -name other)" ] ||
    fail "bad input left something behind: $(ls -A "$machines_dir")"
}

log "names"
expect_fail "name is empty" cove create ""
expect_fail "a-z, 0-9 and '-'" cove create ../x
expect_fail "a-z, 0-9 and '-'" cove create Dev
expect_fail "64 characters" cove create "$(printf 'a%.0s' $(seq 64))"
expect_fail "a-z, 0-9 and '-'" cove start "a/b"
nothing_created

log "sizes"
expect_fail "more than zero" cove create m1 --image "$COVE_TEST_IMAGE" --memory 0
expect_fail "not a size" cove create m1 --image "$COVE_TEST_IMAGE" --memory abc
expect_fail "more than zero" cove create m1 --image "$COVE_TEST_IMAGE" --memory=-1
expect_fail "unknown unit" cove create m1 --image "$COVE_TEST_IMAGE" --disk 4XB
expect_fail "more than this host" cove create m1 --image "$COVE_TEST_IMAGE" --memory 100TiB
expect_fail "more than this host" cove create m1 --image "$COVE_TEST_IMAGE" --cpus 999
expect_fail "at least 1 CPU" cove create m1 --image "$COVE_TEST_IMAGE" --cpus 0
expect_fail "more than the" cove create m1 --image "$COVE_TEST_IMAGE" --disk 1000000
expect_fail "too small" cove create m1 --image "$COVE_TEST_IMAGE" --memory 1MiB
expect_fail "unknown architecture" cove create m1 --image "$COVE_TEST_IMAGE" --arch sparc
expect_fail "unknown accelerator" cove create m1 --image "$COVE_TEST_IMAGE" --accel fast
expect_fail "hvf is macOS only" cove create m1 --image "$COVE_TEST_IMAGE" --accel hvf
nothing_created

log "images"
expect_fail "no image at" cove create m1 --image /nonexistent/image
bad_image="$COVE_HOME/bad-image"
mkdir -p "$bad_image"
echo '{"arch": ' >"$bad_image/image.json"
expect_fail "is corrupt" cove create m1 --image "$bad_image"
# A real image.json over files that do not match their digests.
cp "$COVE_TEST_IMAGE/image.json" "$bad_image/image.json"
for f in vmlinuz initrd.img rootfs.img; do echo junk >"$bad_image/$f"; done
expect_fail "does not match its sha256" cove create m1 --image "$bad_image"
expect_fail "is for x86_64" cove create m1 --image "$COVE_TEST_IMAGE" --arch aarch64
nothing_created

log "bad runtime and reverse sockets"
expect_fail "unknown runtime" cove create m1 --image "$COVE_TEST_IMAGE" --runtime podman
expect_fail "is not NAME=HOST_PATH:GUEST_PATH" cove create m1 --image "$COVE_TEST_IMAGE" --reverse-socket junk
expect_fail "must be an absolute path" cove create m1 --image "$COVE_TEST_IMAGE" --reverse-socket "ssh=/tmp/a.sock:relative/path"
expect_fail "is given twice" cove create m1 --image "$COVE_TEST_IMAGE" \
  --reverse-socket "a=/tmp/a.sock:/run/a.sock" --reverse-socket "a=/tmp/b.sock:/run/b.sock"
expect_fail "reverse socket name" cove create m1 --image "$COVE_TEST_IMAGE" --reverse-socket "Bad_Name=/tmp/a.sock:/run/a.sock"
nothing_created

log "exec, logs and copy on what cannot take them"
expect_fail "no machine named 'nosuch'" cove exec nosuch -- true
expect_fail "no machine named 'nosuch'" cove logs nosuch
expect_fail "exactly one side must be in a machine" cove copy /etc/hostname /tmp/x
nothing_created

log "unknown machines"
expect_fail "no machine named 'nosuch'" cove start nosuch
expect_fail "no machine named 'nosuch'" cove stop nosuch
expect_fail "no machine named 'nosuch'" cove delete nosuch
expect_fail "no machine named 'nosuch'" cove inspect nosuch
nothing_created

log "existing names, running machines"
cove create good "${MACHINE_FLAGS[@]}"
cove create other "${MACHINE_FLAGS[@]}"
before=$(cat "$machines_dir/good/machine.json")
expect_fail "already exists" cove create good --image "$COVE_TEST_IMAGE" --memory 2GiB
[ "$before" = "$(cat "$machines_dir/good/machine.json")" ] || fail "failed create changed good"

log "corrupt machine.json: reported, others keep working"
stop_coved
echo '{"name": "other", "spec": ' >"$machines_dir/other/machine.json"
mkdir -p "$machines_dir/.creating-half"   # what a crash mid-create leaves
start_coved
[ "$(machine_field other .state)" = error ] || fail "corrupt machine not in error"
machine_field other .error | grep -q "machine.json is unreadable" || fail "no parse error shown"
[ ! -e "$machines_dir/.creating-half" ] || fail "half-created machine left"
expect_fail "cannot start" cove start other

expect_fail "start it first" cove exec good -- true
expect_fail "start it first" cove logs good --service containerd
cove start good
[ "$(machine_field good .state)" = running ] || fail "good did not start"
expect_fail "not KEY=VALUE" cove exec good -e NOEQUALS -- true
expect_fail "must be an absolute guest path" cove exec good -w relative -- true
expect_fail "working directory /nonexistent" cove exec good -w /nonexistent -- true
expect_fail "unknown service" cove logs good --service sshd
expect_fail "stop it to switch" cove start good --runtime docker
[ "$(machine_field good .runtime)" = containerd ] || fail "refused runtime switch changed the machine"
expect_fail "already running" cove start good
expect_fail "stop it first" cove delete good
[ "$(machine_field good .state)" = running ] || fail "refused delete changed state"
cove delete --force good
[ ! -e "$machines_dir/good" ] || fail "forced delete left the directory"
[ -z "$(our_qemus)" ] || fail "forced delete left qemu: $(our_qemus)"
cove delete other
[ "$(cove list --json)" = "[]" ] || fail "machines left: $(cove list --json)"
log "PASS bad_input"
