#!/usr/bin/env bash
# Foreign architectures:
#   - an aarch64 machine boots on this x86_64 host (tcg), runs the
#     cross-built cove-agent, and its containerd runs an arm64 container;
#   - in an x86_64 docker machine, `docker run --platform linux/arm64` of an
#     arm64 busybox image prints aarch64 (binfmt_misc and qemu-user, F flag),
#     the machine says which process runs emulated, and it still works after
#     `cove restart` and after a coved restart;
#   - an image whose arch does not match the machine's is refused;
#   - `cove image import URL` from a local HTTP server checks the digest: a
#     wrong one and a cut download are refused and leave nothing.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
: "${COVE_TEST_IMAGE_AARCH64:?COVE_TEST_IMAGE_AARCH64 must point at an aarch64 image (tests/run.sh builds one)}"
[ -x "$COVE_BIN/cove-agent-aarch64" ] || fail "no $COVE_BIN/cove-agent-aarch64 (the build makes it with g++-aarch64-linux-gnu)"
start_coved

log "an image of another arch is refused"
expect_fail "is for x86_64 but the machine is aarch64" cove create bad --arch aarch64 --image "$COVE_TEST_IMAGE"
expect_fail "is for aarch64 but the machine is x86_64" cove create bad --image "$COVE_TEST_IMAGE_AARCH64"
[ "$(cove list --json)" = "[]" ] || fail "a refused create left a machine"

arm_tar="$COVE_HOME/busybox-arm64.tar"
"$COVE_SOURCE/tests/images/make-test-image" "$arm_tar" --arch arm64 --name cove.test/busybox-arm64:latest

log "an aarch64 machine on this $(uname -m) host"
begin=$SECONDS
cove create a64 --arch aarch64 --image "$COVE_TEST_IMAGE_AARCH64" --memory 1GiB --disk 4 --mount none >/dev/null
cove start a64 2>"$COVE_HOME/a64.start" || fail "start a64: $(cat "$COVE_HOME/a64.start")"
log "a64 running after $((SECONDS - begin)) s ($(machine_field a64 .accel), $(machine_field a64 .accel_reason))"
[ "$(machine_field a64 .accel)" = tcg ] || fail "a64 accel: $(machine_field a64 .accel)"
[ "$(cove exec a64 -- uname -m)" = aarch64 ] || fail "uname -m in a64: $(cove exec a64 -- uname -m)"
sock=$(machine_field a64 .sockets.containerd)
# (ctr filters an import by its own platform; this one runs on the host)
"$COVE_CTR" --address "$sock" images import --platform linux/arm64 "$arm_tar" >/dev/null ||
  fail "ctr import in a64"
out=$(cove exec a64 -- ctr run --rm cove.test/busybox-arm64:latest a64-c uname -m) || fail "ctr run in a64: $out"
[ "$out" = aarch64 ] || fail "the arm64 container in a64 said: $out"
cove stop a64 >/dev/null

log "arm64 containers in an x86_64 docker machine, through binfmt"
cove create d1 "${MACHINE_FLAGS[@]}" --runtime docker >/dev/null
cove start d1 2>/dev/null || fail "start d1"
machine_field d1 '.binfmt_handlers[]' | grep -q "^qemu-aarch64 (aarch64" ||
  fail "no aarch64 binfmt handler: $(machine_field d1 .binfmt_handlers)"
DOCKER_HOST=unix://$(machine_field d1 .sockets.docker)
export DOCKER_HOST
docker load -i "$arm_tar" >/dev/null || fail "docker load of the arm64 image"
arm_run() { docker run --rm --platform linux/arm64 cove.test/busybox-arm64:latest "$@"; }
out=$(arm_run uname -m) || fail "docker run --platform linux/arm64: $out"
[ "$out" = aarch64 ] || fail "docker run --platform linux/arm64 said: $out"
log "  ctr run --platform linux/arm64 in the same machine"
cove copy "$arm_tar" d1:/tmp/arm64.tar
out=$(cove exec d1 -- sh -c 'ctr images import --platform linux/arm64 /tmp/arm64.tar >/dev/null &&
  ctr run --rm --platform linux/arm64 cove.test/busybox-arm64:latest t-arm64 uname -m' 2>&1) ||
  fail "ctr run --platform linux/arm64: $out"
[ "$out" = aarch64 ] || fail "ctr run --platform linux/arm64 said: $out"
log "  the machine names the emulated process and its container"
cid=$(docker run -d --name arm-sleep --platform linux/arm64 cove.test/busybox-arm64:latest sleep 300)
log "  cove doctor right after docker run -d names it (the agent looks again first, 3 s at most)"
begin_ms=$(date +%s%3N)
doctor=$(cove doctor d1 --json) || true
log "  (doctor took $(($(date +%s%3N) - begin_ms)) ms)"
jq -e '.[] | select(.subject == "container arm-sleep in d1" and (.message | contains("through binfmt")))' \
  <<<"$doctor" >/dev/null || fail "cove doctor right after docker run -d does not name arm-sleep: $doctor"
wait_for 30 "the emulated sleep to be reported" \
  eval 'machine_field d1 ".emulated[] | select(.comm == \"sleep\") | .arch" | grep -qx aarch64'
machine_field d1 ".emulated[] | select(.comm == \"sleep\") | .cgroup" | grep -q "$cid" ||
  fail "the emulated sleep's cgroup does not name container $cid: $(machine_field d1 .emulated)"
docker rm -f "$cid" >/dev/null

log "  again after cove restart"
cove restart d1 >/dev/null 2>&1 || fail "restart d1"
[ "$(arm_run uname -m)" = aarch64 ] || fail "arm64 container after cove restart: $(arm_run uname -m 2>&1)"
log "  again after a coved restart"
stop_coved
start_coved
wait_for 20 "d1 re-adopted" eval '[ "$(machine_field d1 .state)" = running ]'
wait_for 20 "docker to answer" docker version
[ "$(arm_run uname -m)" = aarch64 ] || fail "arm64 container after a coved restart: $(arm_run uname -m 2>&1)"

log "  --no-foreign-binaries turns it off (from the next start)"
cove set d1 --no-foreign-binaries | grep -q . || fail "set --no-foreign-binaries"
cove restart d1 >/dev/null 2>&1 || fail "restart d1"
[ -z "$(machine_field d1 '.binfmt_handlers[]')" ] || fail "handlers with foreign binaries off: $(machine_field d1 .binfmt_handlers)"
out=$(arm_run uname -m 2>&1) && fail "an arm64 container ran with foreign binaries off: $out"
log "  refused as it should be: $(tail -n 1 <<<"$out")"
cove stop d1 >/dev/null
unset DOCKER_HOST

log "cove image import URL: digest checked, nothing left on failure"
# A small image (the loader checks files and digests, not that it boots).
img="$COVE_HOME/served/tiny"
mkdir -p "$img"
printf 'kernel' >"$img/vmlinuz"
printf 'initrd' >"$img/initrd.img"
head -c 4096 /dev/zero >"$img/rootfs.img"
sum() { sha256sum "$1" | cut -d' ' -f1; }
jq -n --arg k "$(sum "$img/vmlinuz")" --arg i "$(sum "$img/initrd.img")" --arg r "$(sum "$img/rootfs.img")" '{
  format: 1, name: "tiny", arch: "aarch64", suite: "trixie", kernel_version: "test",
  kernel_cmdline: "console=ttyAMA0", files: {kernel: "vmlinuz", initrd: "initrd.img", rootfs: "rootfs.img"},
  sha256: {"vmlinuz": $k, "initrd.img": $i, "rootfs.img": $r}, rootfs_size_bytes: 4096}' >"$img/image.json"
tar -C "$COVE_HOME/served" -czf "$COVE_HOME/served/tiny.tar.gz" tiny
digest=$(sum "$COVE_HOME/served/tiny.tar.gz")
port=$((20000 + RANDOM % 20000))
# A server that also serves a cut download: /cut.tar.gz promises the whole
# file and closes after half of it.
python3 - "$COVE_HOME/served" "$port" >"$COVE_HOME/http.log" 2>&1 <<'PY' &
import http.server, os, sys
root, port = sys.argv[1], int(sys.argv[2])
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=root, **k)
    def do_GET(self):
        if self.path != "/cut.tar.gz": return super().do_GET()
        data = open(os.path.join(root, "tiny.tar.gz"), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
HTTP_PID=$!
wait_for 10 "the test HTTP server" curl -sf -o /dev/null "http://127.0.0.1:$port/tiny.tar.gz"
images_before=$(ls -A "$COVE_HOME/images")
expect_fail "not $(printf '0%.0s' $(seq 64))" cove image import "http://127.0.0.1:$port/tiny.tar.gz" \
  --digest "$(printf '0%.0s' $(seq 64))"
[ "$(ls -A "$COVE_HOME/images")" = "$images_before" ] || fail "a wrong digest left: $(ls -A "$COVE_HOME/images")"
expect_fail "failed after" cove image import "http://127.0.0.1:$port/cut.tar.gz" --digest "$digest"
[ "$(ls -A "$COVE_HOME/images")" = "$images_before" ] || fail "a cut download left: $(ls -A "$COVE_HOME/images")"
expect_fail "not a sha256" cove image import "http://127.0.0.1:$port/tiny.tar.gz" --digest nope
out=$(cove image import "http://127.0.0.1:$port/tiny.tar.gz" --digest "$digest" 2>&1) || fail "import: $out"
grep -q "downloading" <<<"$out" || fail "no download progress: $out"
grep -q "imported tiny (aarch64)" <<<"$out" || fail "import said: $out"
cove image list | grep -q "^tiny *aarch64" || fail "image list: $(cove image list)"
kill "$HTTP_PID"
log "PASS foreign"
