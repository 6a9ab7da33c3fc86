#!/usr/bin/env bash
# Foreign architectures, in one run on one machine: an aarch64 machine's
# start next to an x86_64 one's (median of RUNS), and one CPU-bound workload
# (sha256 and gzip of 32 MiB) three ways: natively in an x86_64
# machine, in an arm64 container under binfmt (qemu-user) in that machine,
# and natively in the aarch64 machine (the whole machine emulated). The
# ratios are the cost figures `cove doctor` quotes. Writes markdown to stdout.
#
# With PEER_AARCH64_IMAGE, a second aarch64 image (another kernel, say) is
# started too, its runs interleaved with the first's. STARTS_ONLY=1 stops
# after the start table.
#
#   bench/foreign.sh X86_64_IMAGE AARCH64_IMAGE [RUNS [PEER_AARCH64_IMAGE]]
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

usage="usage: bench/foreign.sh X86_64_IMAGE AARCH64_IMAGE [RUNS [PEER_AARCH64_IMAGE]]"
x86_image=${1:?$usage}
arm_image=${2:?$usage}
runs=${3:-3}
peer_image=${4:-}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }

bench_start_coved

echo "## Foreign architectures, run of $(date -u +%FT%TZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
echo "$(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(qemu-system-x86_64 --version | head -1),"
echo "$(qemu-system-aarch64 --version | head -1). Guests: 2 vCPUs, 1 GiB, containerd, no mounts; accel $(cove version --json | jq -r .auto_accel)."
echo

cove create x64 --image "$x86_image" --cpus 2 --memory 1GiB --disk 4 --mount none >/dev/null
cove create a64 --arch aarch64 --image "$arm_image" --cpus 2 --memory 1GiB --disk 4 --mount none >/dev/null
machines=(x64 a64)
if [ -n "$peer_image" ]; then
  cove create peer --arch aarch64 --image "$peer_image" --cpus 2 --memory 1GiB --disk 4 --mount none >/dev/null
  machines+=(peer)
fi
kernel_of() { jq -r .kernel_version "$1/image.json"; }
for m in "${machines[@]}"; do : >"$COVE_HOME/start.$m"; done
# Interleaved: the host's speed drifts within minutes.
for r in $(seq "$runs"); do
  for m in "${machines[@]}"; do
    begin=$(date +%s%N)
    cove start "$m" >/dev/null 2>&1
    echo $((($(date +%s%N) - begin) / 1000000)) >>"$COVE_HOME/start.$m"
    [ "$r" = "$runs" ] && [ "$m" != peer ] || cove stop "$m" >/dev/null 2>&1
  done
done
x_start=$(median <"$COVE_HOME/start.x64")
a_start=$(median <"$COVE_HOME/start.a64")
echo "| start, \`cove start\` to running (median of $runs) | ms |"
echo "|---|---|"
echo "| x86_64 machine | $x_start |"
echo "| aarch64 machine (every instruction emulated), kernel $(kernel_of "$arm_image") | $a_start ($(ratio "$a_start" "$x_start")x) |"
if [ -n "$peer_image" ]; then
  p_start=$(median <"$COVE_HOME/start.peer")
  echo "| aarch64 machine, kernel $(kernel_of "$peer_image") | $p_start ($(ratio "$p_start" "$x_start")x; $(ratio "$a_start" "$p_start")x of it for the first aarch64) |"
fi
echo
[ "${STARTS_ONLY:-0}" != 1 ] || exit 0

# The workload: sha256 and gzip of 32 MiB of pseudo-random data, in a
# busybox container of Debian's busybox-static each time (the same program,
# built for amd64 or arm64), timed inside the guest.
arm_tar="$COVE_HOME/busybox-arm64.tar"
amd_tar="$COVE_HOME/busybox-amd64.tar"
"$src/tests/images/make-test-image" "$arm_tar" --arch arm64 --name cove.test/busybox-arm64:latest 2>/dev/null
"$src/tests/images/make-test-image" "$amd_tar" --arch amd64 --name cove.test/busybox-amd64:latest 2>/dev/null
ctr_tool=${COVE_CTR:-$src/build/test-tools/ctr}
[ -x "$ctr_tool" ] || "$src/tests/tools/fetch-ctr" "$ctr_tool" >/dev/null
for m in x64 a64; do
  "$ctr_tool" --address "$(cove inspect $m --json | jq -r .sockets.containerd)" images import \
    --platform linux/arm64 "$arm_tar" >/dev/null
done
"$ctr_tool" --address "$(cove inspect x64 --json | jq -r .sockets.containerd)" images import \
  "$amd_tar" >/dev/null
# Timed with /proc/uptime (10 ms steps): busybox date has no %N.
work='mkdir -p /tmp; head -c 33554432 /dev/urandom > /tmp/w.bin
t() { cut -d" " -f1 /proc/uptime; }
a=$(t); sha256sum /tmp/w.bin >/dev/null; b=$(t); gzip -c /tmp/w.bin >/dev/null; c=$(t)
awk -v a="$a" -v b="$b" -v c="$c" "BEGIN {printf \"%d %d\\n\", (b - a) * 1000, (c - b) * 1000}"'
declare -A sha gz
measure() {  # KEY MACHINE PLATFORM
  local key=$1 m=$2 platform=$3 r
  : >"$COVE_HOME/w.$key"
  for r in $(seq "$runs"); do
    cove exec "$m" -- ctr run --rm --platform "linux/$platform" "cove.test/busybox-$platform:latest" \
      "w-$key-$r" sh -c "$work" >>"$COVE_HOME/w.$key"
  done
  sha[$key]=$(awk '{print $1}' "$COVE_HOME/w.$key" | median)
  gz[$key]=$(awk '{print $2}' "$COVE_HOME/w.$key" | median)
}
measure native x64 amd64
measure binfmt x64 arm64
measure machine a64 arm64
echo "| sha256 and gzip of 32 MiB (median of $runs) | sha256 (ms) | gzip (ms) | against native |"
echo "|---|---|---|---|"
echo "| x86_64 machine, natively | ${sha[native]} | ${gz[native]} | 1x |"
echo "| arm64 container in the x86_64 machine (qemu-user, binfmt) | ${sha[binfmt]} | ${gz[binfmt]} | sha256 $(ratio "${sha[binfmt]}" "${sha[native]}")x, gzip $(ratio "${gz[binfmt]}" "${gz[native]}")x |"
echo "| aarch64 machine (qemu-system, tcg) | ${sha[machine]} | ${gz[machine]} | sha256 $(ratio "${sha[machine]}" "${sha[native]}")x, gzip $(ratio "${gz[machine]}" "${gz[native]}")x |"
echo
echo "(the x86_64 machine itself runs under $(cove inspect x64 --json | jq -r .accel): on a host with kvm, native is far faster and the ratios larger)"
cove stop x64 >/dev/null 2>&1
cove stop a64 >/dev/null 2>&1
