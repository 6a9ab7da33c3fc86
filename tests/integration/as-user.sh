#!/usr/bin/env bash
# Runs an integration test as an ordinary user: cove is a per-user tool, and
# root hides permission and ownership bugs. Used by tests that must not run
# as root (mounts, oom): `bash as-user.sh TEST.sh`. As root it makes the user
# cove-test (if missing), stages what the test needs where that user can
# read it (the build may sit under /root), gives the user a fresh home of its
# own, and runs the test through runuser. As an ordinary user it just runs
# the test.
set -euo pipefail
test_script=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [ "$(id -u)" != 0 ]; then exec bash "$test_script"; fi

: "${COVE_BIN:?}" "${COVE_SOURCE:?}" "${COVE_TEST_IMAGE:?}"
user=cove-test
id "$user" >/dev/null 2>&1 || useradd --system --user-group --shell /bin/bash --no-create-home "$user"
stage=$(mktemp -d /tmp/cove-user-XXXXXX)
trap 'pkill -9 -u "$user" -f "qemu-system|virtiofsd|coved" 2>/dev/null || true; rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/source/tests" "$stage/tools" "$stage/home"
for b in cove coved cove-agent; do cp "$COVE_BIN/$b" "$stage/bin/"; done
# The cross-built agent and the aarch64 image, for tests of aarch64 machines.
[ ! -x "$COVE_BIN/cove-agent-aarch64" ] || cp "$COVE_BIN/cove-agent-aarch64" "$stage/bin/"
cp -r "$COVE_SOURCE/tests/integration" "$COVE_SOURCE/tests/images" "$COVE_SOURCE/tests/tools" "$stage/source/tests/"
env_extra=()
if [ -n "${COVE_TEST_IMAGE_AARCH64:-}" ]; then env_extra+=(COVE_TEST_IMAGE_AARCH64="$COVE_TEST_IMAGE_AARCH64"); fi
if [ -n "${COVE_CTR:-}" ] && [ -x "$COVE_CTR" ]; then
  cp "$COVE_CTR" "$stage/tools/ctr"
  env_extra+=(COVE_CTR="$stage/tools/ctr")
fi
if [ -n "${COVE_TEST_VIRTIOFSD:-}" ] && [ -x "$COVE_TEST_VIRTIOFSD" ]; then
  # The wrapper names its files by absolute path: fetch a copy for the stage.
  bash "$COVE_SOURCE/tests/tools/fetch-virtiofsd" "$stage/tools/virtiofsd" >/dev/null
  env_extra+=(COVE_TEST_VIRTIOFSD="$stage/tools/virtiofsd")
fi
chmod -R a+rX "$stage"
chown "$user:$user" "$stage/home"
chmod 0700 "$stage/home"
# The image cache is the root run's: readable by all, written by none here.
[ -r "$COVE_TEST_IMAGE/image.json" ] || { echo "as-user: $COVE_TEST_IMAGE is not readable" >&2; exit 1; }
rc=0
runuser -u "$user" -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$stage/home" USER="$user" \
  LANG=C.UTF-8 COVE_BIN="$stage/bin" COVE_SOURCE="$stage/source" COVE_TEST_IMAGE="$COVE_TEST_IMAGE" \
  "${env_extra[@]}" bash "$stage/source/tests/integration/$(basename "$test_script")" || rc=$?
exit $rc
