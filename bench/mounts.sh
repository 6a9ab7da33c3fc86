#!/usr/bin/env bash
# Host directory mounts, each transport next to the guest's own disk, in one
# run on one machine: sequential write and read (MiB/s), the small-file
# workload (create, stat and delete 5,000 files of 1 KiB), untarring a source
# tree (this repository's), and host edit to guest inotify event (p50/p95).
# Writes a markdown report to stdout; docs/benchmarks.md keeps the figures.
#
#   bench/mounts.sh IMAGE_DIR [RUNS]
#
# Needs a virtiofsd that runs as you (tests/tools/fetch-virtiofsd makes one
# on Debian 12) at COVE_VIRTIOFSD or build/test-tools/virtiofsd.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

image=${1:?usage: bench/mounts.sh IMAGE_DIR [RUNS]}
runs=${2:-3}
export COVE_VIRTIOFSD=${COVE_VIRTIOFSD:-$src/build/test-tools/virtiofsd}
[ -x "$COVE_VIRTIOFSD" ] || "$src/tests/tools/fetch-virtiofsd" "$COVE_VIRTIOFSD" >&2
work=$(mktemp -d /var/tmp/cbench-mounts-XXXXXX)
BENCH_CLEANUP+=("$work")
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p/100)+1; print a[i]}'; }

bench_start_coved
mkdir -p "$work/vfs" "$work/p9"
cove create bench --image "$image" --cpus 2 --memory 2GiB --disk 8 \
  --mount "$work/vfs:/bench/vfs:virtiofs" --mount "$work/p9:/bench/p9:9p" >/dev/null
cove start bench 2>/dev/null
cove exec bench -- mkdir -p /usr/local/bin
for tool in fsbench:bench/tools/fsbench.c inotify-watch:tests/tools/inotify-watch.c; do
  cc -static -O2 -o "$COVE_HOME/${tool%%:*}" "$src/${tool#*:}"
  cove copy "$COVE_HOME/${tool%%:*}" "bench:/usr/local/bin/${tool%%:*}"
done
git -C "$src" archive --format=tar HEAD >"$COVE_HOME/src.tar"
cove copy "$COVE_HOME/src.tar" bench:/root/src.tar
tree_files=$(tar -tf "$COVE_HOME/src.tar" | wc -l)
cove exec bench -- mkdir -p /var/tmp/bench

echo "## Mounts, run of $(date -u +%FT%TZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
echo "$(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(qemu-system-x86_64 --version | head -1),"
echo "$("$COVE_VIRTIOFSD" --version). Guest: 2 vCPUs, 2 GiB, $(cove inspect bench --json | jq -r .accel),"
echo "kernel $(cove exec bench -- uname -r). Host directories on $(df --output=fstype "$work" | tail -1); median of $runs runs."
echo

declare -A fig
for target in guest:/var/tmp/bench virtiofs:/bench/vfs 9p:/bench/p9; do
  name=${target%%:*} dir=${target#*:}
  for r in $(seq "$runs"); do
    cove exec bench -- /usr/local/bin/fsbench "$dir" 128 5000 >"$COVE_HOME/fs.$name.$r"
    cove exec bench -- sh -c "rm -rf $dir/untar && mkdir $dir/untar && a=\$(cut -d' ' -f1 /proc/uptime) &&
      tar -xf /root/src.tar -C $dir/untar && sync && b=\$(cut -d' ' -f1 /proc/uptime) &&
      awk -v a=\$a -v b=\$b 'BEGIN {printf \"untar_s %d\\n\", (b - a) * 1000}'" |
      awk '{printf "untar_s %.3f\n", $2 / 1000}' >>"$COVE_HOME/fs.$name.$r"
    cove exec bench -- rm -rf "$dir/untar"
  done
  for key in write_mib_s read_mib_s create_s stat_s delete_s small_total_s untar_s; do
    fig[$name.$key]=$(cat "$COVE_HOME"/fs."$name".* | awk -v k="$key" '$1 == k {print $2}' | median)
  done
done

echo "| measure | guest disk (virtio-blk, ext4) | virtiofs | 9p |"
echo "|---|---|---|---|"
row() {
  echo "| $1 | ${fig[guest.$2]} | ${fig[virtiofs.$2]} | ${fig[9p.$2]} |"
}
row "sequential write, 128 MiB, fsync (MiB/s)" write_mib_s
row "sequential read, guest cache dropped (MiB/s)" read_mib_s
row "create 5,000 files of 1 KiB (s)" create_s
row "stat them (s)" stat_s
row "delete them (s)" delete_s
row "small-file workload, total (s)" small_total_s
row "untar a source tree ($tree_files entries) and sync (s)" untar_s
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo
echo "Small-file workload against the guest's own disk: virtiofs $(ratio "${fig[virtiofs.small_total_s]}" "${fig[guest.small_total_s]}")x,"
echo "9p $(ratio "${fig[9p.small_total_s]}" "${fig[guest.small_total_s]}")x (target for virtiofs: within 3x)."
echo

# Host write to guest inotify event: measured on the host, from just before
# the write to the event line arriving through `cove exec`'s output.
echo "| host write to guest inotify event | p50 (ms) | p95 (ms) | max (ms) | events |"
echo "|---|---|---|---|---|"
# (virtiofs only: on 9p no guest inotify watch sees changes, docs/mounts.md)
# One target today; the loop takes more.
# shellcheck disable=SC2043
for target in "virtiofs:vfs:0"; do
  IFS=: read -r name sub index <<<"$target"
  mkdir -p "$work/$sub/w"
  out=$COVE_HOME/inotify.$name
  cove exec bench -- /usr/local/bin/inotify-watch "/bench/$sub/w" >"$out" 2>&1 &
  watch_pid=$!
  for _ in $(seq 300); do
    [ "$(cove inspect bench --json | jq ".mounts[$index].watched_dirs")" -ge 1 ] && break
    sleep 0.1
  done
  : >"$COVE_HOME/lat.$name"
  for i in $(seq 50); do
    begin=$(date +%s%N)
    echo "$i" >"$work/$sub/w/f$i"
    for _ in $(seq 2000); do grep -q " .*/f$i\$" "$out" && break; sleep 0.005; done
    echo $((($(date +%s%N) - begin) / 1000000)) >>"$COVE_HOME/lat.$name"
    sleep 0.2  # one save at a time, as an editor does
  done
  kill "$watch_pid" 2>/dev/null || true
  echo "| $name | $(pct 50 <"$COVE_HOME/lat.$name") | $(pct 95 <"$COVE_HOME/lat.$name") | $(sort -n "$COVE_HOME/lat.$name" | tail -1) | $(cut -d' ' -f2 "$out" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}') |"
done
echo
echo "Target: p95 <= 500 ms."
cove stop bench >/dev/null 2>&1
