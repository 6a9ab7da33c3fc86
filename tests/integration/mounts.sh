#!/usr/bin/env bash
# Host directory mounts, as an ordinary user (as-user.sh re-runs this as
# cove-test when started as root): the home at the same path, writable, over
# virtiofs (a virtiofsd that runs as the user: COVE_TEST_VIRTIOFSD, from
# tests/tools/fetch-virtiofsd) and a directory over 9p in the same machine;
# host edits seen at once; guest files belong to the user; read-only refuses
# writes; symlinks both ways; chown accepted; a host write wakes a guest
# inotify watcher (with the time it took); a host directory removed while
# mounted; re-adoption after kill -9 of coved; nothing left after stop; bad
# input refused with nothing created; `docker run -v` from the host CLI.
if [ "$(id -u)" = 0 ]; then exec bash "$(dirname "$0")/as-user.sh" "$0"; fi
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"

[ -n "${COVE_TEST_VIRTIOFSD:-}" ] || fail "COVE_TEST_VIRTIOFSD is not set (tests/run.sh fetches one)"
export COVE_VIRTIOFSD=$COVE_TEST_VIRTIOFSD
log "as $(id -un) (uid $(id -u)), home $HOME, $("$COVE_VIRTIOFSD" --version)"
me=$(id -un)
mkdir -p "$HOME/work/watch" "$HOME/ro-dir" "$HOME/p9" "$HOME/gone"
echo "read only" >"$HOME/ro-dir/file"
echo v1 >"$HOME/work/edit.txt"
ln -s edit.txt "$HOME/work/host-link"
start_coved
MOUNT_MACHINE=(--image "$COVE_TEST_IMAGE" --memory 1GiB --disk 4 --cpus 2)

log "bad input: refused, nothing created"
expect_fail "No such file or directory" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/missing"
expect_fail "is not a directory" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/work/edit.txt"
expect_fail "already the guest path" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/p9:/src" \
  --mount "$HOME/gone:/src"
expect_fail "overlap" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/p9:/src" --mount "$HOME/gone:/src/x"
expect_fail "must be absolute" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/p9:src"
expect_fail "which the guest needs for itself" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/p9:/etc"
expect_fail "which the guest needs for itself" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/p9:/proc/x"
expect_fail "would hide the guest's own /" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/p9:/"
expect_fail "cannot go with other" cove create bad "${MOUNT_MACHINE[@]}" --mount none --mount "$HOME/p9"
expect_fail "is not auto, virtiofs or 9p" cove create bad "${MOUNT_MACHINE[@]}" --mount-type nfs
mkdir -p "$HOME/secret" && chmod 000 "$HOME/secret"
expect_fail "you cannot read" cove create bad "${MOUNT_MACHINE[@]}" --mount "$HOME/secret"
chmod 700 "$HOME/secret"
[ "$(cove list --json)" = "[]" ] || fail "bad input created something: $(cove list --json)"

log "a new machine mounts the home at the same path by default"
cove create plain "${MOUNT_MACHINE[@]}" >/dev/null
[ "$(machine_field plain '.mounts | length')" = 1 ] || fail "default mounts: $(machine_field plain .mounts)"
[ "$(machine_field plain '.mounts[0].host_path')" = "$HOME" ] || fail "default mount: $(machine_field plain .mounts)"
[ "$(machine_field plain '.mounts[0].guest_path')" = "$HOME" ] || fail "default mount: $(machine_field plain .mounts)"
[ "$(machine_field plain '.mounts[0].read_only')" = false ] || fail "default mount is read-only"
cove set plain --mount none >/dev/null
[ "$(machine_field plain '.mounts | length')" = 0 ] || fail "--mount none: $(machine_field plain .mounts)"
# shellcheck disable=SC2088  # the literal ~: cove resolves it, as a user would type it quoted
cove set plain --mount "~/p9:/srv/p9:ro" >/dev/null
[ "$(machine_field plain '.mounts[0].guest_path')" = /srv/p9 ] || fail "set --mount: $(machine_field plain .mounts)"
cove delete plain >/dev/null

log "start m1: home over virtiofs (auto), /ro read-only, /p9 over 9p, /gone"
cove events m1 --json >"$COVE_HOME/events.jsonl" &
EVENTS_PID=$!
cove create m1 "${MOUNT_MACHINE[@]}" --mount "~" --mount "$HOME/ro-dir:/ro:ro" --mount "$HOME/p9:/p9:9p" \
  --mount "$HOME/gone:/gone" >/dev/null
cove start m1 || fail "start m1"
for i in 0 1 2 3; do
  [ "$(machine_field m1 ".mounts[$i].state")" = mounted ] || fail "mount $i: $(machine_field m1 ".mounts[$i]")"
done
[ "$(machine_field m1 '.mounts[0].type')" = virtiofs ] || fail "home is not on virtiofs: $(machine_field m1 .mounts)"
[ "$(machine_field m1 '.mounts[2].type')" = 9p ] || fail "/p9 is not on 9p: $(machine_field m1 .mounts)"
pgrep -u "$me" -f "virtiofsd.*--shared-dir" >/dev/null || fail "no virtiofsd runs as $me"
! pgrep -u 0 -f "virtiofsd.*$HOME" >/dev/null || fail "a virtiofsd runs as root"

check_transport() {  # GUEST_DIR HOST_DIR TYPE
  local g=$1 h=$2
  log "  $g: guest writes belong to $me; host edits are seen at once"
  cove exec m1 -- sh -c "echo from-guest > $g/by-guest && mkdir -p $g/dir-by-guest" || fail "write in $g"
  [ "$(cat "$h/by-guest")" = from-guest ] || fail "$h/by-guest: $(cat "$h/by-guest" 2>&1)"
  [ "$(stat -c %U "$h/by-guest")" = "$me" ] || fail "$h/by-guest is owned by $(stat -c %U "$h/by-guest")"
  [ "$(stat -c %U "$h/dir-by-guest")" = "$me" ] || fail "$h/dir-by-guest owned by $(stat -c %U "$h/dir-by-guest")"
  echo one >"$h/host-edit"
  [ "$(cove exec m1 -- cat "$g/host-edit")" = one ] || fail "guest does not see a new host file in $g"
  echo two >"$h/host-edit"
  [ "$(cove exec m1 -- cat "$g/host-edit")" = two ] || fail "guest sees a stale host edit in $g"
  log "  $g: symlinks both ways; chown changes nothing on the host (accepted on virtiofs)"
  ln -sf host-edit "$h/host-link"
  [ "$(cove exec m1 -- readlink "$g/host-link")" = host-edit ] || fail "host symlink in $g"
  [ "$(cove exec m1 -- cat "$g/host-link")" = two ] || fail "following a host symlink in $g"
  cove exec m1 -- ln -s by-guest "$g/guest-link" || fail "ln -s in $g"
  [ "$(readlink "$h/guest-link")" = by-guest ] || fail "guest symlink in $h: $(ls -l "$h/guest-link")"
  if [ "$3" = virtiofs ]; then
    cove exec m1 -- chown 999:999 "$g/by-guest" || fail "chown in $g failed"
  else
    # QEMU's 9p passes chown through to the host, where a user cannot give
    # files away (docs/mounts.md).
    out=$(cove exec m1 -- chown 999:999 "$g/by-guest" 2>&1) && fail "chown to another uid worked on 9p?"
    grep -q "Operation not permitted" <<<"$out" || fail "chown on 9p said: $out"
  fi
  [ "$(stat -c %U "$h/by-guest")" = "$me" ] || fail "chown changed the host owner of $h/by-guest"
  cove exec m1 -- chmod 600 "$g/by-guest" || fail "chmod in $g failed"
  [ "$(stat -c %a "$h/by-guest")" = 600 ] || fail "chmod did not reach $h/by-guest"
  log "  $g: in containers: root's files are $me's; another uid gets what the mode bits give it"
  mkdir -p "$h/shared" && chmod 777 "$h/shared" && echo two >"$h/shared/host-edit"
  local bind="type=bind,src=$g/shared,dst=/m,options=rbind:rw"
  cove exec m1 -- ctr run --rm --mount "$bind" "$TEST_IMAGE_REF" "c-root-$RANDOM" \
    sh -c 'echo from-container > /m/by-container' || fail "container write into $g"
  [ "$(stat -c %U "$h/shared/by-container")" = "$me" ] ||
    fail "$h/shared/by-container owned by $(stat -c %U "$h/shared/by-container")"
  [ "$(cove exec m1 -- ctr run --rm --user 65534:65534 --mount "$bind" "$TEST_IMAGE_REF" \
        "c-user-$RANDOM" sh -c 'cat /m/host-edit && echo x > /m/by-nobody')" = two ] ||
    fail "uid 65534 in a container cannot read or write in $g/shared (mode 777)"
  [ "$(stat -c %U "$h/shared/by-nobody")" = "$me" ] || fail "uid 65534's file is not $me's"
  ! cove exec m1 -- ctr run --rm --user 65534:65534 --mount "$bind" "$TEST_IMAGE_REF" \
    "c-user-$RANDOM" sh -c 'echo x >> /m/host-edit' 2>/dev/null || fail "uid 65534 wrote a 0644 file"
}
CTR=${COVE_CTR:-}
[ -x "$CTR" ] || fail "COVE_CTR is not set (tests/run.sh fetches ctr)"
"$CTR" --address "$(machine_field m1 .sockets.containerd)" images import "$(test_image_tar)" >/dev/null ||
  fail "image import"
check_transport "$HOME" "$HOME" virtiofs
check_transport /p9 "$HOME/p9" 9p

log "the home is at the same path, writable"
cove exec m1 -- test -w "$HOME/work/edit.txt" || fail "home not writable in the guest"
[ "$(cove exec m1 -- cat "$HOME/work/host-link")" = v1 ] || fail "home symlink"

log "read-only refuses writes"
out=$(cove exec m1 -- sh -c 'echo x > /ro/new' 2>&1) && fail "wrote into a read-only mount"
grep -qi "read-only" <<<"$out" || fail "read-only write said: $out"
[ "$(cove exec m1 -- cat /ro/file)" = "read only" ] || fail "cannot read /ro/file"

log "a host write wakes an inotify watcher in the guest"
# The image's busybox has no inotifyd: a small static watcher of our own.
cc -static -O2 -o "$COVE_HOME/inotify-watch" "$COVE_SOURCE/tests/tools/inotify-watch.c" ||
  fail "cannot build tests/tools/inotify-watch.c"
cove copy "$COVE_HOME/inotify-watch" m1:/usr/local/bin/inotify-watch
cove exec m1 -- /usr/local/bin/inotify-watch "$HOME/work/watch" >"$COVE_HOME/inotify.out" 2>&1 &
WATCH_PID=$!
wait_for 40 "the guest's watch to reach the host" \
  eval '[ "$(machine_field m1 ".mounts[0].watched_dirs")" -ge 1 ]'
begin=$(date +%s%N)
echo hello >"$HOME/work/watch/saved.txt"
wait_for 5 "an inotify event for saved.txt in the guest" grep -q "saved.txt" "$COVE_HOME/inotify.out"
log "  seen $((($(date +%s%N) - begin) / 1000000)) ms after the host write: $(grep saved.txt "$COVE_HOME/inotify.out" | cut -d' ' -f2 | tr '\n' ' ')"
wait_for 5 "a close-write event" grep -q "CLOSE_WRITE .*saved.txt" "$COVE_HOME/inotify.out"
mv "$HOME/work/watch/saved.txt" "$HOME/work/watch/renamed.txt"
wait_for 5 "an event for the renamed file" grep -q "renamed.txt" "$COVE_HOME/inotify.out"
n=$(wc -l <"$COVE_HOME/inotify.out")
rm "$HOME/work/watch/renamed.txt"
wait_for 5 "an event for the removal" eval '[ "$(wc -l <"$COVE_HOME/inotify.out")" -gt "$n" ]'
log "  removal seen as: $(tail -n +$((n + 1)) "$COVE_HOME/inotify.out" | cut -d' ' -f2- | tr '\n' ' ')"
n=$(wc -l <"$COVE_HOME/inotify.out")
cove exec m1 -- sh -c "echo guest > $HOME/work/watch/own.txt"
wait_for 5 "the guest's own write" grep -q "own.txt" "$COVE_HOME/inotify.out"
settle=$((SECONDS + 2))
while [ $SECONDS -lt $settle ]; do sleep 0.2; done  # time for an echo to show, if there were one
own=$(tail -n +$((n + 1)) "$COVE_HOME/inotify.out" | grep -c "ATTRIB.*own.txt" || true)
[ "$own" = 0 ] || fail "the guest's own write came back from the host: $(cat "$COVE_HOME/inotify.out")"
kill "$WATCH_PID" 2>/dev/null || true
log "coved killed and restarted: the mounts go on, virtiofsd is re-adopted"
vpid=$(pgrep -u "$me" -f "virtiofsd.*--shared-dir" | sed -n 1p)
kill -9 "$COVED_PID"
wait "$COVED_PID" 2>/dev/null || true
COVED_PID=""
echo three >"$HOME/host-while-down"
wait "$EVENTS_PID" 2>/dev/null || true  # its stream ended with coved
start_coved
cove events m1 --json >"$COVE_HOME/events.jsonl" &
EVENTS_PID=$!
wait_for 20 "m1 re-adopted" eval '[ "$(machine_field m1 .state)" = running ]'
wait_for 10 "mounts reported again" eval '[ "$(machine_field m1 ".mounts[0].state")" = mounted ]'
[ "$(cove exec m1 -- cat "$HOME/host-while-down")" = three ] || fail "home mount broken after re-adoption"
kill -0 "$vpid" || fail "virtiofsd $vpid did not survive coved"

log "a host directory removed while mounted"
rm -rf "$HOME/gone"
wait_for 10 "the mount to say its host directory is gone" \
  eval '[ "$(machine_field m1 ".mounts[3].state")" = host-gone ]'
machine_field m1 '.mounts[3].error' | grep -q "removed or moved away" || fail "gone: $(machine_field m1 '.mounts[3]')"
wait_for 10 "the mount event" jq -e -s 'any(.[]; .kind == "mount" and .mount.state == "host-gone")' \
  "$COVE_HOME/events.jsonl"
timeout 20 cove exec m1 -- ls /gone >/dev/null 2>&1 || true  # an error, not a hang
cove exec m1 -- true || fail "the guest hangs after its mount's directory went"

log "stop leaves no virtiofsd, socket or run file"
cove stop m1 >/dev/null
wait_for 10 "virtiofsd to go" eval '[ -z "$(pgrep -u "$me" -f "virtiofsd.*--shared-dir")" ]'
left=$(find "$COVE_HOME/machines/m1" -maxdepth 1 \( -name '*.sock' -o -name mounts.json \) -printf '%f\n')
[ -z "$left" ] || fail "left behind: $left"
expect_fail "the host directory $HOME/gone is gone" cove start m1
[ "$(machine_field m1 .state)" = error ] || fail "m1 after a start with a missing mount: $(machine_field m1 .state)"
mkdir "$HOME/gone"
expect_fail "only while it is stopped" sh -c "cove start m1 >/dev/null 2>&1 && cove set m1 --mount none"
cove stop m1 >/dev/null
kill "$EVENTS_PID" 2>/dev/null || true

log "docker run -v from the host docker CLI sees the host's files"
mkdir -p "$HOME/site"
echo "<h1>hello from the host</h1>" >"$HOME/site/index.html"
cove create d1 "${MOUNT_MACHINE[@]}" --runtime docker >/dev/null
cove start d1 || fail "start d1"
sock=$(machine_field d1 .sockets.docker)
export DOCKER_HOST=unix://$sock
docker load -i "$(test_image_tar)" >/dev/null || fail "docker load"
out=$(docker run --rm -v "$HOME/site:/srv" "$TEST_IMAGE_REF" cat /srv/index.html) || fail "docker run -v: $out"
[ "$out" = "<h1>hello from the host</h1>" ] || fail "docker run -v saw: $out"
docker run --rm -v "$HOME/site:/srv" "$TEST_IMAGE_REF" sh -c 'echo from-container > /srv/made' ||
  fail "container write"
[ "$(stat -c %U "$HOME/site/made")" = "$me" ] || fail "a container's file is owned by $(stat -c %U "$HOME/site/made")"
cove stop d1 >/dev/null
log "PASS mounts"
