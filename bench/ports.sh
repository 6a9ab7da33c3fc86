#!/usr/bin/env bash
# Port forwarding benchmarks on one real VM (see docs/benchmarks.md, "Port
# forwarding"):
#   - detection: a guest listener until its host forward is listening, and a
#     closed listener until the forward is closed (p50/p95 over COUNT ports);
#   - cove-agent's CPU with 50 guest listeners open and nothing else to do;
#   - iperf3 throughput, HTTP request latency and one-byte round trips through
#     cove's forwards (both routes: the VM's network, for listeners on the
#     guest's 0.0.0.0 or ::, and the agent link, for listeners on its
#     127.0.0.1) next to QEMU's own user-mode hostfwd to the same guest port,
#     same VM, same run;
#   - 1000 concurrent connections through one forward, all answered.
#
#   bench/ports.sh [IMAGE_DIR] [COUNT]
#
# IMAGE_DIR defaults to the test image cache (tests/run.sh builds it). Needs
# python3, iperf3, jq and curl on the host. Run it on an otherwise idle host.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

image=${1:-/var/tmp/cove-test-images/$("$src/guest/image/recipe-hash")}
count=${2:-100}
[ -f "$image/image.json" ] || { echo "ports.sh: no image at $image (run tests/run.sh)" >&2; exit 1; }
# The peer: QEMU's user-net forwards to the same guest ports cove forwards.
export COVE_BENCH_HOSTFWD="tcp:127.0.0.1:25201-:5201 tcp:127.0.0.1:28080-:18080 tcp:127.0.0.1:28081-:18081 tcp:127.0.0.1:28082-:18082"
say() { echo "$*" >&2; }

bench_start_coved
name=pb
cove create "$name" --image "$image" --cpus 2 --memory 2GiB --disk 4 --mount none >/dev/null
cove start "$name" >/dev/null 2>&1
forward_field() {  # forward_field PORT FIELD
  cove ports "$name" --json |
    jq -r --argjson p "$1" --arg f "$2" '[.[] | select(.host_port == $p) | .[$f]][0] // "none"'
}
await_forward() {  # await_forward PORT [ROUTE]: listening (on that route)
  local end=$((SECONDS + 20))
  until [ "$(forward_field "$1" state)" = listening ] &&
    { [ -z "${2:-}" ] || [ "$(forward_field "$1" route)" = "$2" ]; }; do
    [ $SECONDS -lt $end ] || { say "forward $1 never came up${2:+ on the $2 route}"; exit 1; }
    sleep 0.1
  done
}

echo "# cove port forwarding benchmark"
echo
echo "Host: $(nproc) cores, $(. /etc/os-release; echo "$PRETTY_NAME"), $(qemu-system-x86_64 --version | head -1)."
echo "Guest '$name': 2 vCPUs, 2 GiB, accel $(cove inspect "$name" --json | jq -r .accel)."
echo

say "detection over $count listeners"
detect=$(python3 "$src/bench/ports_probe.py" detect "$name" "$count" 20000)
echo "## Detection ($count listeners, one at a time)"
echo
echo '| from | to | p50 ms | p95 ms | max ms |'
echo '|---|---|---|---|---|'
jq -r '["guest listener bound", "host forward listening", .bound_to_forward],
       ["exec request sent", "host forward listening", .request_to_forward],
       ["guest listener closed", "host forward closed", .gone_to_closed] |
       "| \(.[0]) | \(.[1]) | \(.[2].p50_ms) | \(.[2].p95_ms) | \(.[2].max_ms) |"' <<<"$detect"
echo

say "agent CPU with 50 idle listeners"
cove exec "$name" -- sh -c 'for p in $(seq 21000 21049); do socat TCP-LISTEN:$p,reuseaddr,fork /dev/null </dev/null >/dev/null 2>&1 & done'
await_forward 21049
sleep 2
ticks() { cove exec "$name" -- sh -c 'awk "{print \$14 + \$15}" /proc/$(pidof cove-agent)/stat'; }
t0=$(ticks); s0=$(date +%s.%N)
sleep 60
t1=$(ticks); s1=$(date +%s.%N)
hz=100  # USER_HZ of the Debian guest kernel
cpu=$(awk -v a="$t0" -v b="$t1" -v s0="$s0" -v s1="$s1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz / (s1 - s0) * 100}')
echo "## cove-agent idle CPU"
echo
echo "With 50 guest listeners open and forwarded, over 60 s: **$cpu%** of one vCPU"
echo "(guest-side utime+stime of cove-agent, $((t1 - t0)) ticks at $hz Hz, including the"
echo "two \`cove exec\` calls that read it)."
echo

say "iperf3 through cove and through QEMU hostfwd"
cove exec "$name" -- iperf3 -s -D -p 5201 >/dev/null
cove exec "$name" -- iperf3 -s -D -B 127.0.0.1 -p 5202 >/dev/null
await_forward 5201 network
await_forward 5202 agent
iperf() {  # iperf PORT [-R]: Mbit/s received
  # The guest's iperf3 server takes one test at a time and may still be
  # closing the last one: give it a moment, and a second try.
  local out
  for _ in 1 2; do
    sleep 2
    if out=$(iperf3 -c 127.0.0.1 -p "$1" -t 8 -O 1 ${2:-} -J); then
      jq -r '.end.sum_received.bits_per_second / 1e6 | floor' <<<"$out"
      return
    fi
  done
  echo "failed: $(jq -r .error <<<"$out")"
}
echo "## Throughput: iperf3, one TCP stream, 8 s"
echo
echo '| path | host -> guest Mbit/s | guest -> host Mbit/s |'
echo '|---|---|---|'
echo "| cove forward, network route (guest listener on ::) | $(iperf 5201) | $(iperf 5201 -R) |"
echo "| cove forward, agent route (guest listener on 127.0.0.1) | $(iperf 5202) | $(iperf 5202 -R) |"
echo "| QEMU user-net hostfwd (peer) | $(iperf 25201) | $(iperf 25201 -R) |"
echo

say "request latency"
cove exec "$name" -- sh -c 'mkdir -p /tmp/www && echo ok > /tmp/www/index.html && busybox httpd -p 18080 -h /tmp/www && busybox httpd -p 127.0.0.1:18070 -h /tmp/www'
cove exec "$name" -- sh -c 'setsid socat TCP-LISTEN:18082,fork,reuseaddr PIPE </dev/null >/dev/null 2>&1 &
                           setsid socat TCP-LISTEN:18072,bind=127.0.0.1,fork,reuseaddr PIPE </dev/null >/dev/null 2>&1 &
                           sleep 1'
await_forward 18080 network
await_forward 18082 network
await_forward 18070 agent
await_forward 18072 agent
lat=$(python3 "$src/bench/ports_probe.py" latency 200 18080 18070 28080)
route_table() {  # route_table JSON NETWORK_PORT AGENT_PORT QEMU_PORT
  echo '| path | p50 ms | p95 ms | max ms |'
  echo '|---|---|---|---|'
  jq -r --arg n "$2" --arg a "$3" --arg q "$4" '
    ["cove forward, network route", .[$n]], ["cove forward, agent route", .[$a]],
    ["QEMU user-net hostfwd (peer)", .[$q]] |
    "| \(.[0]) | \(.[1].p50_ms) | \(.[1].p95_ms) | \(.[1].max_ms) |"' <<<"$1"
}
rtt=$(python3 "$src/bench/ports_probe.py" rtt 500 18082 18072 28082)
echo "## Request latency: HTTP GET on a new connection each (busybox httpd), 200 each, in turn"
echo
route_table "$lat" 18080 18070 28080
echo
echo "## One-byte round trips on an open connection (guest socat echo), 500 each, in turn"
echo
route_table "$rtt" 18082 18072 28082
echo

say "1000 concurrent connections"
# An echo server with a deep backlog (busybox httpd listens with a backlog of
# 9, which measures httpd, not the forward); socat forks one child each.
cove exec "$name" -- sh -c 'socat TCP-LISTEN:18081,fork,reuseaddr,backlog=2048 PIPE </dev/null >/dev/null 2>&1 &'
await_forward 18081
conc=$(python3 "$src/bench/ports_probe.py" concurrent 18081 1000)
peer=$(python3 "$src/bench/ports_probe.py" concurrent 28081 1000)
echo "## 1000 concurrent connections through one forward (guest socat echo server)"
echo
echo '| path | complete echoes | seconds | errors |'
echo '|---|---|---|---|'
for r in "$conc" "$peer"; do
  jq -r '"| port \(.port) | \(.complete) of \(.connections) | \(.seconds) | \(.errors | join("; ")) |"' <<<"$r"
done
echo "(port 18081: cove; 28081: QEMU user-net hostfwd)"
echo
echo "Raw: $(jq -c -n --argjson d "$detect" --argjson l "$lat" --argjson r "$rtt" --argjson c "$conc" \
  --argjson p "$peer" '{detect: $d, latency: $l, rtt: $r, concurrent_cove: $c, concurrent_qemu: $p}') cpu_percent=$cpu"
