#!/usr/bin/env bash
# Start speed against its floor, in one run on one machine (issue 15):
#   - the floor: bare qemu boots the image's own kernel with an initramfs of
#     busybox alone, launch to its first userland line on the console;
#   - a containerd machine: `cove start` of a stopped machine to running
#     (the runtime answers on the host socket);
#   - a docker machine: the same, running meaning dockerd answers.
# Each the median of RUNS; the guest's own timeline (its uptime when the
# initramfs starts, the root disk's init starts, the agent starts, the
# runtime answers) from cove-init's markers and the agent's lines on the
# console.
# Writes a markdown report to stdout; docs/benchmarks.md keeps the figures.
#
#   bench/start.sh IMAGE_DIR [RUNS]
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

image=${1:?usage: bench/start.sh IMAGE_DIR [RUNS]}
runs=${2:-3}
busybox=$(command -v busybox) || { echo "bench/start.sh needs busybox (apt-get install busybox-static)" >&2; exit 2; }
file -L "$busybox" | grep -q 'statically linked' || { echo "$busybox is not static" >&2; exit 2; }

bench_start_coved
accel=$(cove version --json | jq -r .auto_accel)

# ------------------------------------------------------------------ floor
floor="$COVE_HOME/floor"
mkdir -p "$floor/root/bin" "$floor/root/dev" "$floor/root/proc"
cp "$busybox" "$floor/root/bin/busybox"
cat >"$floor/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
echo "floor: userland" >/dev/console
/bin/busybox poweroff -f
EOF
chmod +x "$floor/root/init"
(cd "$floor/root" && find . | cpio -o -H newc --quiet) >"$floor/initrd.img"
accel_args=(-accel "tcg,thread=single,tb-size=256" -cpu max)
[ "$accel" = kvm ] && accel_args=(-accel kvm -cpu host)
floor_ms=()
for _ in $(seq "$runs"); do
  rm -f "$floor/serial.log"
  : >"$floor/serial.log"
  t0=$(now_ms)
  qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
    "${accel_args[@]}" -machine q35 -smp 2 -m 1024M \
    -kernel "$image/vmlinuz" -initrd "$floor/initrd.img" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
    -serial "file:$floor/serial.log" &
  qpid=$!
  # One tail polling every 10 ms: a new process per check would steal the
  # guest's CPU.
  coproc SERIAL { exec tail -F -s 0.01 -n +1 "$floor/serial.log" 2>/dev/null; }
  grep -q -m1 "floor: userland" <&"${SERIAL[0]}"
  floor_ms+=($(($(now_ms) - t0)))
  kill "$SERIAL_PID" 2>/dev/null || true
  wait "$SERIAL_PID" 2>/dev/null || true
  kill -9 "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
done

# -------------------------------------------------------------- machines
# agent_ms SERIAL_LOG PATTERN: the guest's uptime (ms) on the agent's last
# console line that matches.
# Empty when the line is not there (yet): the figure is left out, not the run.
agent_ms() { { grep -a "cove-agent: \[.*$2" "$1" || true; } | tail -n1 | sed -nE 's/.*\[ *([0-9]+)\.([0-9]{3})\].*/\1\2/p' | sed 's/^0*//'; }
# marker_ms SERIAL_LOG MARKER: the uptime (ms) cove-init printed on MARKER.
marker_ms() { { grep -a "cove-init: $2 (uptime" "$1" || true; } | tail -n1 | sed -nE 's/.*uptime ([0-9]+)\.([0-9]{2})s.*/\1\20/p' | sed 's/^0*//'; }
declare -A wall agent ready initramfs rootfs
for runtime in containerd docker; do
  name=bench-$runtime
  cove create "$name" --image "$image" --memory 1GiB --cpus 2 --disk 4 --mount none \
    --runtime "$runtime" >/dev/null
  cove start "$name" >/dev/null 2>&1 && cove stop "$name" >/dev/null 2>&1  # first boot grows the disk
  serial="$COVE_HOME/machines/$name/serial.log"
  runtime_service=$runtime
  [ "$runtime" = docker ] && runtime_service=dockerd
  w=() a=() r=() i=() f=()
  for _ in $(seq "$runs"); do
    t0=$(now_ms)
    cove start "$name" >/dev/null 2>&1
    w+=($(($(now_ms) - t0)))
    a+=("$(agent_ms "$serial" 'started (pid')")
    r+=("$(agent_ms "$serial" "$runtime_service is ready")")
    i+=("$(marker_ms "$serial" initramfs)")
    f+=("$(marker_ms "$serial" rootfs)")
    cove stop "$name" >/dev/null 2>&1
  done
  wall[$runtime]="${w[*]}" agent[$runtime]="${a[*]}" ready[$runtime]="${r[*]}"
  initramfs[$runtime]="${i[*]}" rootfs[$runtime]="${f[*]}"
done
med() { tr ' ' '\n' <<<"$1" | median; }

m_floor=$(printf '%s\n' "${floor_ms[@]}" | median)
m_ctd=$(med "${wall[containerd]}")
m_dock=$(med "${wall[docker]}")
echo "## Start speed, run of $(date -u +%FT%TZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
echo "$(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(qemu-system-x86_64 --version | head -1)."
echo "Accelerator: $accel. Guest: $(jq -r '.kernel_version' "$image/image.json"), 2 vCPUs, 1 GiB, no mounts. Median of $runs."
echo
echo "Guest columns: its uptime (ms) when the initramfs starts, when the root disk's init starts, when the agent starts, when the runtime answers."
echo
echo "| what | median (ms) | runs (ms) | guest: initramfs | guest: rootfs | guest: agent | guest: runtime ready |"
echo "|---|---|---|---|---|---|---|"
echo "| floor: bare qemu, same kernel, busybox-only initramfs, launch to userland | $m_floor | ${floor_ms[*]} | | | | |"
for runtime in containerd docker; do
  what="containerd machine"
  [ "$runtime" = docker ] && what="docker machine"
  echo "| $what: \`cove start\` to running | $(med "${wall[$runtime]}") | ${wall[$runtime]} | $(med "${initramfs[$runtime]}") | $(med "${rootfs[$runtime]}") | $(med "${agent[$runtime]}") | $(med "${ready[$runtime]}") |"
done
echo
awk -v f="$m_floor" -v c="$m_ctd" -v d="$m_dock" 'BEGIN {
  printf "containerd machine / floor: %.2fx (target <= 1.5x); docker machine / containerd machine: %.2fx (target <= 2.0x)\n", c / f, d / c }'
