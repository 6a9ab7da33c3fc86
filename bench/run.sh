#!/usr/bin/env bash
# cove's benchmarks for the foundation: start time next to raw qemu, `cove
# list --json` with 20 machines, coved's idle memory and wakeups. Writes a
# markdown report to stdout; docs/benchmarks.md keeps the figures.
#
#   bench/run.sh IMAGE_DIR [RUNS]
#
# Run it on an otherwise idle machine: other load changes every figure.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

image=${1:?usage: bench/run.sh IMAGE_DIR [RUNS]}
command -v hyperfine >/dev/null ||
  { echo "bench/run.sh needs hyperfine: run packaging/debian-deps.sh (or apt-get install hyperfine)" >&2; exit 2; }
runs=${2:-5}

bench_start_coved

echo "## Run of $(date -u +%FT%TZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
echo "$(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(qemu-system-x86_64 --version | head -1)."
echo "Accelerator: $(cove version --json | jq -r .auto_accel) (auto; kvm probed: $(cove version --json | jq -r '.accels[] | select(.accel=="kvm") | if .usable then "works" else "unusable" end'))."
echo "Guest: $(jq -r '.kernel_version' "$image/image.json"), 2 vCPUs, 1 GiB."
echo

# ---------------------------------------------------------------- start time
cove create bench --image "$image" --memory 1GiB --cpus 2 --disk 4 --mount none >/dev/null
cove start bench >/dev/null 2>&1 && cove stop bench >/dev/null 2>&1  # first boot grows the disk
start_wall=() ready=() boot=()
for _ in $(seq "$runs"); do
  t0=$(now_ms)
  cove start bench >/dev/null 2>&1
  t1=$(now_ms)
  start_wall+=($((t1 - t0)))
  ready+=("$(cove inspect bench --json | jq -r .guest.start_to_ready_ms)")
  boot+=("$(cove inspect bench --json | jq -r .guest.boot_to_agent_ms)")
  cove stop bench >/dev/null 2>&1
done

# Raw qemu on the same kernel, initrd (with the agent appended) and disk,
# with the same devices, measured from launch to the root file system's init
# printing its first line on the serial console.
dir="$COVE_HOME/machines/bench"
raw=()
for _ in $(seq "$runs"); do
  rm -f "$dir/raw-serial.log" "$dir/raw-qmp.sock" "$dir/raw-agent.sock"
  t0=$(now_ms)
  qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
    -accel tcg,thread=single,tb-size=256 -cpu max -machine q35 -smp 2 -m 1024M \
    -kernel "$image/vmlinuz" -initrd "$dir/initrd.img" \
    -append "$(jq -r .kernel_cmdline "$image/image.json") cove.hostname=raw" \
    -drive "file=$dir/disk.qcow2,if=none,id=root,format=qcow2" -device virtio-blk-pci,drive=root \
    -netdev user,id=net0 -device virtio-net-pci,netdev=net0 -device virtio-rng-pci \
    -device virtio-serial-pci,id=vser0 \
    -chardev "socket,id=agent,path=$dir/raw-agent.sock,server=on,wait=off" \
    -device virtserialport,bus=vser0.0,chardev=agent,name=org.cove.agent.0 \
    -serial "file:$dir/raw-serial.log" &
  qpid=$!
  # One tail polling every 10 ms (its default 1 s would quantize the result);
  # a new process per check would steal CPU from the guest instead.
  coproc SERIAL { exec tail -F -s 0.01 -n +1 "$dir/raw-serial.log" 2>/dev/null; }
  grep -q -m1 "cove-init: rootfs" <&"${SERIAL[0]}"
  t1=$(now_ms)
  raw+=($((t1 - t0)))
  kill "$SERIAL_PID" 2>/dev/null || true
  kill -9 "$qpid"; wait "$qpid" 2>/dev/null || true
done

m_wall=$(printf '%s\n' "${start_wall[@]}" | median)
m_ready=$(printf '%s\n' "${ready[@]}" | median)
m_boot=$(printf '%s\n' "${boot[@]}" | median)
m_raw=$(printf '%s\n' "${raw[@]}" | median)
echo "### Start of a stopped machine ($runs runs, median)"
echo
echo "| what | median | runs (ms) |"
echo "|---|---|---|"
echo "| \`cove start\` whole command, stopped -> running | $m_wall ms | ${start_wall[*]} |"
echo "| coved: qemu launch -> agent hello | $m_ready ms | ${ready[*]} |"
echo "| guest: kernel start -> agent start (CLOCK_BOOTTIME) | $m_boot ms | ${boot[*]} |"
echo "| raw qemu, same kernel/initrd/disk/devices: launch -> rootfs init | $m_raw ms | ${raw[*]} |"
echo
echo "Ratio cove start / raw boot to init: $(awk -v a="$m_wall" -v b="$m_raw" 'BEGIN {printf "%.2f", a/b}') (target <= 1.5); target <= 6000 ms."
echo

# ---------------------------------------------------------------- list
for i in $(seq 2 20); do cove create "m$i" --image "$image" --memory 512MiB --disk 2 --mount none >/dev/null; done
echo "### \`cove list --json\` with $(cove list --json | jq length) machines (whole process)"
echo
hyperfine -N --warmup 5 --runs 50 --export-json "$COVE_HOME/list.json" "cove list --json" >/dev/null 2>&1 ||
  hyperfine --warmup 5 --runs 50 --export-json "$COVE_HOME/list.json" "cove list --json" >/dev/null
jq -r '.results[0] | "mean \(.mean*1000|.*10|round/10) ms, median \(.median*1000|.*10|round/10) ms, max \(.max*1000|.*10|round/10) ms over \(.times|length) runs (hyperfine); target <= 20 ms"' "$COVE_HOME/list.json"
echo

# ---------------------------------------------------------------- idle coved
machines=$(cove list --json | jq length)
sleep 3
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$coved_pid/status")
# Where the resident memory is, by mapping: each shared object (all its
# segments), coved's own binary, [heap], and [anonymous] (malloc arenas,
# thread stacks). Dirty is what the process wrote (relocations, data, heap);
# the rest is code read in from the file.
breakdown() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {
         name = $6 == "" ? "[anonymous]" : $6; sub(/.*\//, "", name)
       }
       /^Rss:/ {rss[name] += $2}
       /^Private_Dirty:/ {dirty[name] += $2}
       END {
         for (n in rss) if (rss[n] > 0) printf "%d %d %s\n", rss[n], dirty[n], n
       }' "/proc/$coved_pid/smaps" | sort -rn |
    awk '/\.so/ {so++; sorss += $1}
         NR <= 12 {printf "  - %s: %d KiB (%d dirty)\n", $3, $1, $2}
         NR > 12 {rest += $1; nrest++}
         END {
           printf "  - %d more mappings: %d KiB\n", nrest, rest
           printf "  - shared objects: %d, %d KiB in all\n", so, sorss
         }'
}
rss_by_mapping=$(breakdown)
# Context switches per thread over 10 s: who wakes an idle coved.
snap() {
  local t
  for t in /proc/"$coved_pid"/task/*; do
    echo "$(basename "$t") $(tr ' ' _ <"$t/comm") $(awk '/ctxt_switches/ {s+=$2} END {print s}' "$t/status")"
  done | sort
}
threads=$(ls /proc/"$coved_pid"/task | wc -l)
snap >"$COVE_HOME/s0"; sleep 10; snap >"$COVE_HOME/s1"
echo "### coved idle ($machines machines defined, none running, no client connected)"
echo
echo "- resident memory: $((rss_kb / 1024)) MiB ($rss_kb KiB); target <= 20 MiB"
echo "- resident by mapping, largest first:"
echo "$rss_by_mapping"
echo "- wakeups in 10 s, by thread ($threads threads; threads not listed did not wake):"
join "$COVE_HOME/s0" "$COVE_HOME/s1" | awk '$5 - $3 > 0 {printf "  - %s: %d\n", $2, $5 - $3}'
