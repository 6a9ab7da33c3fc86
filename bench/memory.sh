#!/usr/bin/env bash
# Freed guest memory going back to the host: qemu's resident memory (VmRSS,
# which counts the shared memfd guest RAM of a virtiofs machine too) before,
# while, and after the guest fills and frees 1 GiB (a tmpfs file of zeros,
# written, then removed). Two cases in one run on one machine: with the
# balloon's free page reporting (cove's default), and the same machine with
# the guest's balloon driver unloaded (what qemu does without it).
# Writes a markdown report to stdout; docs/benchmarks.md keeps the figures.
#
#   bench/memory.sh IMAGE_DIR [RUNS]
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

image=${1:?usage: bench/memory.sh IMAGE_DIR [RUNS]}
runs=${2:-3}
settle_s=30

bench_start_coved
cove create bench --image "$image" --cpus 2 --memory 2GiB --disk 4 --mount none >/dev/null
cove start bench 2>/dev/null
pid=$(cove inspect bench --json | jq -r .pid)
rss_mib() { awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$pid/status"; }

echo "## Memory given back, run of $(date -u +%FT%TZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
echo "$(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(qemu-system-x86_64 --version | head -1)."
echo "Guest: 2 vCPUs, 2 GiB, $(cove inspect bench --json | jq -r .accel), kernel $(cove exec bench -- uname -r)."
echo "Each case: fill a 1 GiB tmpfs file with zeros, remove it, then read qemu's VmRSS once a"
echo "second for ${settle_s} s. 'after' is the last reading; 'back in' is the first second at which RSS"
echo "was within 64 MiB of 'before'. $runs rounds per case."
echo

# round: one fill and free; prints "before during after back_in_s".
round() {
  cove exec bench -- sh -c 'mkdir -p /run/fill && mount -t tmpfs -o size=1100m fill /run/fill'
  local before during after back=-
  before=$(rss_mib)
  cove exec bench -- dd if=/dev/zero of=/run/fill/x bs=1M count=1024 2>/dev/null
  during=$(rss_mib)
  cove exec bench -- sh -c 'rm /run/fill/x && umount /run/fill'
  local start=$SECONDS
  for _ in $(seq "$settle_s"); do
    sleep 1
    after=$(rss_mib)
    if [ "$back" = - ] && [ "$after" -le $((before + 64)) ]; then back=$((SECONDS - start)); fi
  done
  echo "$before $during $after $back"
}

echo "| case | round | qemu RSS before (MiB) | while 1 GiB is filled | ${settle_s} s after the free | back in (s) |"
echo "|---|---|---|---|---|---|"
for case in reporting off; do
  if [ "$case" = off ]; then
    cove exec bench -- rmmod virtio_balloon
    label="no free page reporting (driver unloaded)"
  else
    cove exec bench -- sh -c 'test -d /sys/bus/virtio/drivers/virtio_balloon' ||
      { echo "no virtio_balloon driver in the guest" >&2; exit 1; }
    label="free page reporting (default)"
  fi
  for r in $(seq "$runs"); do
    read -r before during after back <<<"$(round)"
    echo "| $label | $r | $before | $during | $after | $back |"
  done
done
