#!/usr/bin/env python3
"""Measurements for bench/ports.sh, against a running cove machine.

  ports_probe.py detect NAME COUNT FIRST_PORT
      Opens COUNT guest listeners one at a time (socat in the guest, driven
      through one `cove exec`) and times, per port, how long after the guest
      listener was bound the host forward reported "listening" on
      `cove events`; then closes them one at a time and times "closed".
  ports_probe.py latency N PORT...
      N HTTP GETs to each port (a new connection each, as busybox httpd
      closes it), taking the ports in turn; per-request milliseconds.
  ports_probe.py rtt N PORT...
      One connection to each port (an echo server); N one-byte round trips on
      each, taking the ports in turn; per-round-trip milliseconds.
  ports_probe.py concurrent PORT N
      N connections at once to an echo server, each sending a line, closing
      its write side and reading to the end; counts the complete echoes.

Each prints one JSON object on stdout.
"""
import asyncio
import json
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import http.client


def pct(values, p):
    s = sorted(values)
    if not s:
        return None
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return round(s[k], 2)


def summary(ms):
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "max_ms": pct(ms, 100)}


# The guest side of `detect`: reads "+PORT" or "-PORT" lines; starts or stops
# a socat listener and answers with the port once /proc shows it bound (or
# gone). Busy-waits briefly so the answer is not late by a sleep.
GUEST_LOOP = r'''
while read cmd; do
  p=${cmd#?}; hex=$(printf ':%04X ' "$p")
  case $cmd in
    +*) socat TCP-LISTEN:$p,reuseaddr,fork /dev/null </dev/null >/dev/null 2>&1 &
        eval "pid_$p=$!"
        until grep -q "$hex" /proc/net/tcp; do :; done ;;
    -*) eval "kill \$pid_$p"
        while grep -q "$hex.*0A " /proc/net/tcp; do :; done ;;
  esac
  echo "$p"
done
'''


def detect(name, count, first):
    events = subprocess.Popen(["cove", "events", name, "--json"], stdout=subprocess.PIPE,
                              text=True, bufsize=1)
    seen = queue.Queue()

    def read_events():
        for line in events.stdout:
            e = json.loads(line)
            f = e.get("forward")
            if e.get("kind") == "forward" and f:
                seen.put((time.monotonic(), f["host_port"], f["state"]))

    threading.Thread(target=read_events, daemon=True).start()
    time.sleep(0.5)  # the watch is open
    guest = subprocess.Popen(["cove", "exec", "-T", name, "--", "sh", "-c", GUEST_LOOP],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    pending = {}  # (port, state) -> event time, for events that beat the echo

    def await_event(port, state, deadline):
        while (port, state) not in pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"no {state} event for port {port}")
            try:
                t, p, s = seen.get(timeout=left)
            except queue.Empty:
                continue
            pending.setdefault((p, s), t)
        return pending.pop((port, state))

    def step(command, port, state):
        """Sends +PORT or -PORT; returns (sent, confirmed, event) times."""
        t_send = time.monotonic()
        guest.stdin.write(f"{command}{port}\n")
        guest.stdin.flush()
        if guest.stdout.readline().strip() != str(port):
            raise SystemExit(f"guest did not confirm {command}{port}")
        t_done = time.monotonic()
        return t_send, t_done, await_event(port, state, t_send + 10)

    up, up_from_send, down = [], [], []
    ports = list(range(first, first + count))
    for port in ports:
        t_send, t_bound, t_fwd = step("+", port, "listening")
        up.append(max(0.0, (t_fwd - t_bound) * 1000))
        up_from_send.append((t_fwd - t_send) * 1000)
    for port in ports:
        _, t_gone, t_closed = step("-", port, "closed")
        down.append(max(0.0, (t_closed - t_gone) * 1000))
    guest.stdin.close()
    guest.wait(timeout=10)
    events.terminate()
    print(json.dumps({"listeners": count,
                      "bound_to_forward": summary(up),
                      "request_to_forward": summary(up_from_send),
                      "gone_to_closed": summary(down)}))


def get(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/")
    body = c.getresponse().read()
    c.close()
    return body


def latency(n, ports):
    out = {port: [] for port in ports}
    for port in ports:
        get(port)  # warm: the guest's httpd binary is in the page cache
    for _ in range(n):
        for port in ports:
            t0 = time.monotonic()
            get(port)
            out[port].append((time.monotonic() - t0) * 1000)
    print(json.dumps({str(p): summary(v) for p, v in out.items()}))


def rtt(n, ports):
    conns = {}
    for port in ports:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[port] = s
    out = {port: [] for port in ports}
    for i in range(n + 10):
        for port, s in conns.items():
            t0 = time.monotonic()
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise SystemExit(f"port {port}: the echo server did not echo")
            if i >= 10:  # the first few warm both paths up
                out[port].append((time.monotonic() - t0) * 1000)
    for s in conns.values():
        s.close()
    print(json.dumps({str(p): summary(v) for p, v in out.items()}))


async def one(port, i):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = f"connection {i}\n".encode()
    writer.write(line)
    await writer.drain()
    writer.write_eof()
    data = await reader.read()
    writer.close()
    return data == line


async def many(port, n):
    t0 = time.monotonic()
    results = await asyncio.gather(*(asyncio.wait_for(one(port, i), 300) for i in range(n)),
                                   return_exceptions=True)
    ok = sum(1 for r in results if r is True)
    errors = sorted({repr(r)[:80] for r in results if r is not True})
    print(json.dumps({"port": port, "connections": n, "complete": ok,
                      "seconds": round(time.monotonic() - t0, 2), "errors": errors[:5]}))


def main():
    what = sys.argv[1]
    if what == "detect":
        detect(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif what == "latency":
        latency(int(sys.argv[2]), [int(p) for p in sys.argv[3:]])
    elif what == "rtt":
        rtt(int(sys.argv[2]), [int(p) for p in sys.argv[3:]])
    elif what == "concurrent":
        asyncio.run(many(int(sys.argv[2]), int(sys.argv[3])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
