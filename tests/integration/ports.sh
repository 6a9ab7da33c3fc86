#!/usr/bin/env bash
# Automatic port forwarding against a real VM: a guest listener appears on
# host loopback and goes away with it; static forwards; rules (ignore, host
# port mapping, set on a running machine); a host port taken by another
# program is a conflict, in `cove ports` and in events, that resolves by
# itself; UDP; a forward survives an agent restart; bad input changes
# nothing; a second machine wanting a held port is told which machine holds
# it and gets it once that one stops; stop closes everything.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved

name=pf
log "create with a static forward and an ignore rule"
cove create "$name" "${MACHINE_FLAGS[@]}" --forward 18090:18080 \
  --port-rule guestPort=18083,ignore >/dev/null
cove start "$name" >/dev/null
cove events "$name" --json >"$COVE_HOME/events" &
events_pid=$!

# state_of PORT [PROTO]: the forward's state on host 127.0.0.1:PORT, or "none".
state_of() {
  cove ports "$name" --json |
    jq -r --argjson p "$1" --arg proto "${2:-tcp}" \
      '[.[] | select(.host_port == $p and .proto == $proto) | .state][0] // "none"'
}
expect_state() {  # expect_state PORT STATE [PROTO]
  [ "$(state_of "$1" "${3:-}")" = "$2" ]
}
guest_httpd() {  # guest_httpd PORT: busybox httpd daemonizes
  cove exec "$name" -- sh -c "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && busybox httpd -p $1 -h /tmp/www"
}
kill_guest_httpd() {
  cove exec "$name" -- sh -c "kill \$(ps -o pid,args | awk '/httpd -p $1 / && !/awk/ {print \$1}')"
}
get() { curl -sf -m 3 "http://127.0.0.1:$1/"; }

log "a guest listener is forwarded to host 127.0.0.1 at the same port"
started=$(date +%s%N)
guest_httpd 18080
wait_for 5 "guest httpd on host 127.0.0.1:18080" get 18080
log "reachable $(( ($(date +%s%N) - started) / 1000000 )) ms after cove exec started httpd"
[ "$(get 18080)" = hello ] || fail "wrong answer: $(get 18080)"
expect_state 18080 listening || fail "cove ports: $(cove ports "$name")"
[ "$(cove ports "$name" --json | jq -r '.[] | select(.host_port == 18080) | .static')" = false ] ||
  fail "18080 listed as static"
cove ports "$name" | grep -c '^tcp .*127.0.0.1:18080 .*listening' >/dev/null || fail "table: $(cove ports "$name")"

log "a listener on the guest's :: goes through the VM's network (a lane), once it is up"
route_of() {  # route_of PORT
  cove ports "$name" --json | jq -r --argjson p "$1" '.[] | select(.host_port == $p) | .route'
}
wait_for 5 "18080 to take the network route" eval '[ "$(route_of 18080)" = network ]'
qemu_pid=$(cove inspect "$name" --json | jq -r .pid)
lanes() {  # the host TCP ports qemu listens on: its lanes
  ss -Hltnp | awk -v p="pid=$qemu_pid," '$0 ~ p {n = split($4, a, ":"); print a[n]}' | sort -n
}
[ "$(lanes | wc -l)" -ge 1 ] || fail "qemu listens on no lane: $(ss -ltnp)"
for _ in 1 2 3; do [ "$(get 18080)" = hello ] || fail "through the lane: $(get 18080)"; done
# Six at once: four through the lane, the rest over the agent link.
getters=()
for i in 1 2 3 4 5 6; do
  get 18080 >"$COVE_HOME/par-$i" &
  getters+=($!)
done
wait "${getters[@]}"
for i in 1 2 3 4 5 6; do [ "$(cat "$COVE_HOME/par-$i")" = hello ] || fail "parallel get $i"; done

log "the static forward reaches the guest port"
[ "$(get 18090)" = hello ] || fail "static 18090 -> 18080"
expect_state 18090 listening || fail "static: $(cove ports "$name")"

log "an ignore rule keeps a listener off the host"
guest_httpd 18083
# Once 18083 is bound, a listener opened after it being forwarded proves a
# listener set with 18083 in it was decided on.
guest_bound() {  # guest_bound PORT: a guest socket listens on PORT
  cove exec "$name" -- sh -c "grep -q ':$(printf %04X "$1") .* 0A ' /proc/net/tcp /proc/net/tcp6"
}
wait_for 5 "guest 18083 to listen" guest_bound 18083
guest_httpd 18085
wait_for 5 "guest 18085 on the host" expect_state 18085 listening
expect_state 18083 none || fail "ignored port forwarded: $(cove ports "$name")"
get 18083 >/dev/null && fail "ignored port answers on the host"

log "cove set: new rules apply to the running machine"
cove set "$name" --port-rule guestPort=18082,hostPort=18092 --port-rule guestPort=18083,ignore >/dev/null
guest_httpd 18082
wait_for 5 "guest 18082 on host 18092" get 18092
expect_state 18082 none || fail "18082 also forwarded at its own port"

log "a listener on the guest's 127.0.0.1 only goes over the agent link"
cove exec "$name" -- sh -c 'setsid socat TCP-LISTEN:18086,bind=127.0.0.1,reuseaddr,fork SYSTEM:"echo local" </dev/null >/dev/null 2>&1 &'
wait_for 5 "guest 18086 on the host" expect_state 18086 listening
[ "$(route_of 18086)" = agent ] || fail "18086 route: $(route_of 18086)"
[ "$(curl -s -m 3 telnet://127.0.0.1:18086 </dev/null)" = local ] || fail "18086 over the agent link"

log "an IPv6-only listener on :: (which QEMU's IPv4 network cannot reach) goes over the agent link too"
cove exec "$name" -- sh -c 'setsid socat TCP6-LISTEN:18087,ipv6only=1,reuseaddr,fork SYSTEM:"echo six" </dev/null >/dev/null 2>&1 &'
wait_for 5 "guest 18087 on the host" expect_state 18087 listening
[ "$(route_of 18087)" = agent ] || fail "18087 route: $(route_of 18087)"
[ "$(curl -s -m 3 telnet://127.0.0.1:18087 </dev/null)" = six ] || fail "18087 over the agent link"

log "the guest listener going away closes the forward, and its lane"
# Every lane made before counting: 18085 and 18092 (from 18082) are on :: too.
for p in 18085 18092; do wait_for 5 "$p to take the network route" eval "[ \"\$(route_of $p)\" = network ]"; done
# shellcheck disable=SC2034  # read in the eval below
lanes_before=$(lanes | wc -l)
kill_guest_httpd 18080
wait_for 5 "the 18080 forward to close" expect_state 18080 none
get 18080 >/dev/null && fail "18080 still answers"
wait_for 5 "qemu to drop the lane" eval '[ "$(lanes | wc -l)" -lt "$lanes_before" ]'

log "a host port taken by another program: conflict, then up by itself"
socat TCP-LISTEN:18084,bind=127.0.0.1,reuseaddr /dev/null &
holder=$!
wait_for 5 "the host program to listen" sh -c "ss -ltn | grep -c '127.0.0.1:18084 '"
guest_httpd 18084
wait_for 5 "a conflict on 18084" expect_state 18084 conflict
cove ports "$name" --json | jq -r '.[] | select(.host_port == 18084) | .error' |
  grep -c "in use by another program" >/dev/null || fail "conflict reason: $(cove ports "$name" --json)"
kill "$holder"
wait "$holder" 2>/dev/null || true
wait_for 5 "18084 to come up after the port freed" expect_state 18084 listening
[ "$(get 18084)" = hello ] || fail "18084 after the conflict"

log "UDP: a guest echo server answers through the host port"
cove exec "$name" -- sh -c 'socat UDP-RECVFROM:18053,fork PIPE </dev/null >/dev/null 2>&1 &'
wait_for 5 "the UDP forward" expect_state 18053 listening udp
reply=$(echo ping | socat -T3 - UDP:127.0.0.1:18053)
[ "$reply" = ping ] || fail "UDP echo answered '$reply'"

log "kill cove-agent: the forwards survive and serve again"
cove exec "$name" -- sh -c 'kill -9 $(pidof cove-agent)' >/dev/null 2>&1 || true
wait_for 10 "18084 to answer after the agent restart" get 18084
expect_state 18084 listening || fail "after agent restart: $(cove ports "$name")"

log "an address this host lacks fails with the reason"
cove forward add "$name" 192.0.2.1:18095:80 >/dev/null
wait_for 5 "the failed forward" sh -c "cove ports $name --json | jq -e '.[] | select(.host_port == 18095 and .state == \"failed\")'"
cove ports "$name" | grep -c 'no address 192.0.2.1' >/dev/null || fail "failed reason: $(cove ports "$name")"
cove forward rm "$name" 192.0.2.1:18095 >/dev/null
expect_state 18095 none || fail "removed static forward still listed"

log "bad input: clear errors, nothing changes"
before=$(cove inspect "$name" --json | jq -c '[.port_rules, .static_forwards]')
expect_fail "not a port" cove forward add "$name" 99999:80
expect_fail "HOSTPORT:GUESTPORT" cove forward add "$name" 8080
expect_fail "tcp or udp" cove forward add "$name" 8080:80/sctp
expect_fail "no static forward" cove forward rm "$name" 18099
expect_fail "exists already" cove forward add "$name" 18090:80
expect_fail "unknown key" cove set "$name" --port-rule bogus=1
expect_fail "hostPortRange must be as long" cove set "$name" --port-rule guestPortRange=1-3,hostPortRange=5-6
expect_fail "nothing to set" cove set "$name"
expect_fail "no machine named" cove forward add nosuch 18096:80
after=$(cove inspect "$name" --json | jq -c '[.port_rules, .static_forwards]')
[ "$before" = "$after" ] || fail "bad input changed the machine: $before -> $after"

log "events carry every forward state change"
jq -e -s '[.[] | select(.kind == "forward" and .forward.host_port == 18084) | .forward.state] |
  index("conflict") != null and index("listening") != null' "$COVE_HOME/events" >/dev/null ||
  fail "forward events: $(jq -c 'select(.kind == "forward") | [.forward.host_port, .forward.state]' "$COVE_HOME/events")"
jq -e -s '[.[] | select(.kind == "forward" and .forward.host_port == 18080) | .forward.state] |
  index("closed") != null' "$COVE_HOME/events" >/dev/null || fail "no closed event for 18080"

log "a second machine wanting the same host port: conflict naming the holder"
other=pf2
cove create "$other" "${MACHINE_FLAGS[@]}" --forward 18090:18080 >/dev/null
cove start "$other" >/dev/null
other_is() {  # other_is STATE: pf2's forward on host 18090 is in STATE
  [ "$(cove ports "$other" --json | jq -r '[.[] | select(.host_port == 18090) | .state][0] // "none"')" = "$1" ]
}
wait_for 10 "pf2's 18090 in conflict" other_is conflict
[ "$(cove ports "$other" --json | jq -r '.[] | select(.host_port == 18090) | .holder')" = "$name" ] ||
  fail "holder: $(cove ports "$other" --json)"
cove ports "$other" | grep -c "held by cove machine '$name'" >/dev/null || fail "conflict reason: $(cove ports "$other")"

log "stop: every forward closes, the host ports are free, and the waiting machine takes its port"
cove stop "$name" >/dev/null
[ "$(cove ports "$name" --json)" = "[]" ] || fail "forwards after stop: $(cove ports "$name" --json)"
ss -ltn | grep -c ':18092 \|:18084 ' >/dev/null && fail "host ports still bound: $(ss -ltn)"
wait_for 10 "pf2's 18090 to come up once pf let it go" other_is listening
kill "$events_pid" 2>/dev/null || true
cove delete -f "$other" >/dev/null
cove delete "$name" >/dev/null
log "ok"
