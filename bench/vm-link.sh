#!/usr/bin/env bash
# Agent link throughput through a real VM: bytes/s of `cove exec` streams,
# host -> guest (stdin) and guest -> host (stdout), one stream and several in
# parallel. The peer, measured in the same run on the same guest: the same
# bytes over QEMU's user-mode network (virtio-net + slirp), with busybox nc in
# the guest and socat on the host (the guest reaches the host's loopback as
# 10.0.2.2). A guest-internal pipe shows what the guest CPU itself can move.
# See docs/benchmarks.md ("Agent link throughput").
#
#   COVE_HOME=DIR bench/vm-link.sh NAME [MIB] [REPS]
#
# NAME must be running in COVE_HOME. COVE: the cove binary (default
# build/bin/cove); PARALLEL: the parallel stream count (default 8). Each
# stream moves MIB MiB (default 32); every figure is the median of REPS runs
# (default 3), and every run includes starting the guest command (one exec per
# stream, for cove and for the peer alike).
set -euo pipefail

name=${1:?usage: COVE_HOME=DIR bench/vm-link.sh NAME [MIB] [REPS]}
mib=${2:-32}
reps=${3:-3}
: "${COVE_HOME:?set COVE_HOME to the cove home where NAME runs}"
export COVE_HOME
src=$(cd "$(dirname "$0")/.." && pwd)
cove=${COVE:-$src/build/bin/cove}
parallel=${PARALLEL:-8}
bytes=$((mib * 1024 * 1024))
blocks=$((bytes / 65536))
# In the guest, busybox dd with 64 KiB blocks moves the bytes: under TCG
# every guest syscall is expensive, and `head -c` or `wc -c` with their small
# buffers would measure busybox, not the transport. The receiving dd counts
# (its "N+0 records in" line; busybox dd prints no byte count).
gen="dd if=/dev/zero bs=65536 count=$blocks 2>/dev/null"
sink="dd of=/dev/null bs=65536 iflag=fullblock 2>&1 | head -n1"
work=$(mktemp -d /tmp/vmlink-XXXXXX)
listeners=()
cleanup() {
  local pid
  for pid in "${listeners[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

now_ns() { date +%s%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# mib_s TOTAL_BYTES NANOSECONDS
mib_s() { awk -v b="$1" -v ns="$2" 'BEGIN {printf "%.1f", b / 1048576 / (ns / 1e9)}'; }
die() { echo "vm-link: $*" >&2; exit 1; }

# check_counts PREFIX N: each of PREFIX.1..N holds the byte count (from
# wc -c on the host) or the guest dd's "records in" line for `bytes`.
check_counts() {
  local i got
  for i in $(seq "$2"); do
    got=$(tr -d ' \n' <"$1.$i")
    [ "$got" = "$bytes" ] || [ "$got" = "$blocks+0recordsin" ] ||
      die "stream $i of $1 moved '$got', expected $bytes bytes"
  done
}

# Every function prints the elapsed nanoseconds for K streams.
cove_to_guest() {
  local k=$1 i t0 pids=()
  t0=$(now_ns)
  for i in $(seq "$k"); do
    head -c "$bytes" /dev/zero | "$cove" exec "$name" -T -- sh -c "$sink" >"$work/cu.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  echo $(($(now_ns) - t0))
  check_counts "$work/cu" "$k"
}

cove_to_host() {
  local k=$1 i t0 pids=()
  t0=$(now_ns)
  for i in $(seq "$k"); do
    "$cove" exec "$name" -n -T -- sh -c "$gen" | wc -c >"$work/cd.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  echo $(($(now_ns) - t0))
  check_counts "$work/cd" "$k"
}

# listen PORT CMD...: runs CMD (a socat listening on 127.0.0.1:PORT) in the
# background and waits until the port listens.
listen() {
  local port=$1 end=$((SECONDS + 10))
  shift
  "$@" &
  listeners+=($!)
  until ss -Hltn "sport = :$port" | grep -q .; do
    [ $SECONDS -lt $end ] || die "socat did not listen on port $port"
    sleep 0.02
  done
}

port_base=$((20000 + RANDOM % 20000))

net_to_host() {
  local k=$1 i t0 port pids=()
  listeners=()
  for i in $(seq "$k"); do
    port=$((port_base + i))
    listen "$port" sh -c "socat -u TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr STDOUT | wc -c >'$work/nu.$i'"
  done
  t0=$(now_ns)
  for i in $(seq "$k"); do
    "$cove" exec "$name" -n -T -- sh -c "$gen | nc 10.0.2.2 $((port_base + i))" &
    pids+=($!)
  done
  wait "${pids[@]}" "${listeners[@]}"
  echo $(($(now_ns) - t0))
  listeners=()
  check_counts "$work/nu" "$k"
}

net_to_guest() {
  local k=$1 i t0 port pids=()
  listeners=()
  for i in $(seq "$k"); do
    port=$((port_base + 100 + i))
    listen "$port" sh -c "head -c $bytes /dev/zero | socat -u STDIN TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr"
  done
  t0=$(now_ns)
  for i in $(seq "$k"); do
    "$cove" exec "$name" -n -T -- sh -c "nc 10.0.2.2 $((port_base + 100 + i)) </dev/null | $sink" \
      >"$work/nd.$i" &
    pids+=($!)
  done
  wait "${pids[@]}" "${listeners[@]}"
  echo $(($(now_ns) - t0))
  listeners=()
  check_counts "$work/nd" "$k"
}

# The guest alone: the same bytes through pipes inside the guest, timed by
# the guest (no link, no network): a bound set by the guest's CPU. busybox
# date has no %N, so the clock is /proc/uptime (10 ms steps).
guest_pipe() {
  local k=$1
  "$cove" exec "$name" -n -T -- sh -c "
    read t0 _ </proc/uptime
    for i in \$(seq $k); do $gen | dd of=/dev/null bs=65536 2>/dev/null & done
    wait
    read t1 _ </proc/uptime
    echo \$t0 \$t1" | awk '{printf "%.0f\n", ($2 - $1) * 1e9}'
}

exec_latency() {
  local t0
  t0=$(now_ns)
  "$cove" exec "$name" -n -T -- true
  echo $(($(now_ns) - t0))
}

"$cove" exec "$name" -n -T -- true || die "cannot exec in machine '$name' (is it running in $COVE_HOME?)"

declare -A runs
cases=()
for streams in 1 "$parallel"; do
  for what in cove_to_guest net_to_guest cove_to_host net_to_host guest_pipe; do cases+=("$what:$streams"); done
done
lat=()
for _ in $(seq "$reps"); do
  lat+=("$(exec_latency)")
  for c in "${cases[@]}"; do
    what=${c%%:*} streams=${c##*:}
    ns=$("$what" "$streams")
    runs[$c]+="$(mib_s $((bytes * streams)) "$ns") "
  done
done

inspect=$("$cove" inspect "$name" --json 2>/dev/null || echo '{}')
echo "Machine: $(nproc) host cores, $(. /etc/os-release; echo "$PRETTY_NAME"), $(qemu-system-x86_64 --version | head -1);"
echo "guest '$name': $(jq -r '"\(.spec.cpus // .cpus // "?") vCPUs, accel \(.accel // .spec.accel // "?")"' <<<"$inspect" 2>/dev/null || echo "?")."
echo "$mib MiB per stream, median of $reps runs; \`cove exec $name -- true\` took $(printf '%s\n' "${lat[@]}" | median | awk '{printf "%.0f", $1/1e6}') ms (median)."
echo
echo "| path | direction | streams | median MiB/s | runs (MiB/s) |"
echo "|---|---|---|---|---|"
json="{\"benchmark\":\"vm-link\",\"mib_per_stream\":$mib,\"reps\":$reps,\"results\":["
sep=""
for c in "${cases[@]}"; do
  what=${c%%:*} streams=${c##*:}
  case $what in
    cove_to_guest) path="cove exec (agent link)" dir="host -> guest" ;;
    cove_to_host) path="cove exec (agent link)" dir="guest -> host" ;;
    net_to_host) path="user-net: nc -> socat (peer)" dir="guest -> host" ;;
    net_to_guest) path="user-net: socat -> nc (peer)" dir="host -> guest" ;;
    guest_pipe) path="guest pipe (no transport)" dir="in guest" ;;
  esac
  med=$(tr ' ' '\n' <<<"${runs[$c]}" | grep . | median)
  echo "| $path | $dir | $streams | $med | ${runs[$c]% } |"
  json+="$sep{\"path\":\"$what\",\"streams\":$streams,\"median_mib_s\":$med,\"runs_mib_s\":[$(tr ' ' ',' <<<"${runs[$c]% }")]}"
  sep=","
done
echo
echo "$json]}"
