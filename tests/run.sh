#!/usr/bin/env bash
# Builds cove and runs every test: the unit tests, then the integration tests
# that start a real coved and boot real VMs under TCG.
#
# The guest image the integration tests boot is built once through coved
# (`cove image build`, which exercises the Images.Build API) and cached in
# $COVE_TEST_IMAGE_CACHE (default /var/tmp/cove-test-images), keyed by the
# sha256 of the image recipe, so it is rebuilt only when guest/image changes.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${COVE_BUILD_DIR:-$src/build}
cache=${COVE_TEST_IMAGE_CACHE:-/var/tmp/cove-test-images}

echo "== build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOVE_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

echo "== lint (tests/lint.sh: clang-format, shellcheck, clang-tidy on changed sources)"
bash "$src/tests/lint.sh" "$build"

echo "== node client dependencies"
(cd "$src/tests/integration/node" && npm ci --no-audit --no-fund --loglevel=error)

echo "== guest images"
key=$("$src/guest/image/recipe-hash")
# One per architecture: x86_64 machines, and aarch64 ones (tests/integration/foreign.sh).
build_image() {  # ARCH DIR
  if [ -f "$2/image.json" ]; then
    echo "reusing $2"
    return
  fi
  mkdir -p "$cache"
  local home
  home=$(mktemp -d /tmp/cib-XXXXXX)
  COVE_HOME=$home "$build/bin/cove" image build --arch "$1" --output "$2"
  kill "$(cat "$home/coved.lock")" 2>/dev/null || true
  rm -rf "$home"
}
image="$cache/$key"
build_image x86_64 "$image"
export COVE_TEST_IMAGE=$image
image_aarch64="$cache/$key-aarch64"
build_image aarch64 "$image_aarch64"
export COVE_TEST_IMAGE_AARCH64=$image_aarch64

echo "== test tools"
# ctr from Debian's containerd package, without installing that package.
"$src/tests/tools/fetch-ctr" "$build/test-tools/ctr"
# A virtiofsd that runs as an ordinary user (Debian 13's, on Debian 12).
"$src/tests/tools/fetch-virtiofsd" "$build/test-tools/virtiofsd"

echo "== fuzz (each target briefly)"
bash "$src/tests/fuzz/run.sh" "${COVE_FUZZ_SECONDS:-20}"

echo "== tests"
ctest --test-dir "$build" --output-on-failure
