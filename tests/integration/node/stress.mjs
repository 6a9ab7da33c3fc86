// Stress for coved's concurrency contract (daemon/machine/machine.h): the
// operations on one machine are serialized -- a start while it starts or
// stops is refused with FAILED_PRECONDITION, a stop while it starts cancels
// the start (CANCELLED) -- and machines never wait on each other, so List and
// Get answer at once whatever is booting.
//
// CLIENTS clients, each on its own connection, loop for SECONDS picking at
// random among List, Get, Watch, Start and Stop on the named machines. Every
// call has a deadline; a status the contract does not allow is a failure,
// DEADLINE_EXCEEDED above all (a deadlock). Once the time is up and what was
// in flight has ended, each machine's state must match its qemu; then each is
// stopped and must read stopped with no pid.
//
// Usage: node stress.mjs --proto DIR --socket PATH [--seconds 60]
//          [--clients 50] [--stop-every 20] [--think-ms 100]
//          [--max-wait-ms 5000] NAME...
// Prints a JSON summary on stdout; on failure "FAIL: ..." lines on stderr and
// exit status 1.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const { values: opt, positionals: names } = parseArgs({
  allowPositionals: true,
  options: {
    proto: { type: 'string' },
    socket: { type: 'string' },
    seconds: { type: 'string', default: '60' },
    clients: { type: 'string', default: '50' },
    // Mean seconds between stop requests to one machine. Under TCG a boot
    // takes tens of seconds; stopping more often would never let one finish.
    'stop-every': { type: 'string', default: '20' },
    // Mean pause of a client between two calls, milliseconds.
    'think-ms': { type: 'string', default: '100' },
    // The longest a List or Get may take. They never wait for a machine's
    // operation, only for the loop to be free; a stall this long is a bug.
    'max-wait-ms': { type: 'string', default: '5000' },
  },
});
if (!opt.proto || !opt.socket || names.length === 0) {
  console.error('usage: node stress.mjs --proto DIR --socket PATH [--seconds N] [--clients N] NAME...');
  process.exit(2);
}
const seconds = Number(opt.seconds);
const clientCount = Number(opt.clients);
const stopEvery = Number(opt['stop-every']);
const thinkMs = Number(opt['think-ms']);
const maxWaitMs = Number(opt['max-wait-ms']);

const kUnaryDeadlineMs = 30_000;
const kWatchDeadlineMs = 30_000;
// coved gives up on a start after 180 s by itself; the client waits longer.
const kStartDeadlineMs = 200_000;
// A clean stop's 20 s, then qemu quit (3 s) and kill (5 s), with room.
const kStopDeadlineMs = 60_000;
// Until the machines settle once nothing is in flight.
const kSettleMs = 15_000;
// A share of the stops are forced (SIGKILL), the other path to stopped.
const kForceShare = 0.25;

// The refusals machine.cc and machine_stop.cc give a busy machine, by what
// it was doing.
const kBusyStart = {
  running: /^machine '[a-z0-9-]+' is already running$/,
  starting: /^machine '[a-z0-9-]+' is starting; wait for that to finish first$/,
  stopping: /^machine '[a-z0-9-]+' is stopping; wait for that to finish first$/,
  shutting_down: /^machine '[a-z0-9-]+' is still shutting down; wait for that to finish first$/,
};
const kBusyStop = /^machine '[a-z0-9-]+' is already stopping$/;
const kStartCancelled = 'the start was cancelled by a stop';

const def = protoLoader.loadSync(['cove/v1/machines.proto'], {
  includeDirs: [opt.proto], keepCase: true, enums: String, longs: String, defaults: true,
});
const cove = grpc.loadPackageDefinition(def).cove.v1;
const OK = grpc.status.OK;
const codeName = (code) => grpc.status[code] ?? String(code);
// Each client its own connection, as separate processes would have.
const newClient = () => new cove.Machines(`unix://${opt.socket}`,
  grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });

// Failures: the first message of each kind (the same but for its numbers)
// with how often that kind happened.
const failures = new Map();  // kind -> { first, n }
const problem = (what) => {
  const kind = what.replace(/\d+(\.\d+)?/g, '#');
  if (!failures.has(kind)) {
    console.error(`FAIL: ${what}`);
    failures.set(kind, { first: what, n: 0 });
  }
  failures.get(kind).n++;
};
const failureList = () => Object.fromEntries([...failures.values()].map((f) => [f.first, f.n]));

// rpc -> gRPC code -> n, and rpc -> outcome -> n where an outcome tells
// apart what one code covers: refused_starting, cancelled_by_stop, ...
const byCode = {};
const byOutcome = {};
const count = (table, rpc, key) => {
  table[rpc] ??= {};
  table[rpc][key] = (table[rpc][key] ?? 0) + 1;
};
const latencies = { List: [], Get: [], Start: [], Stop: [] };  // ms of calls that ended OK
// The slowest List and Get calls, with when they began, to set beside
// coved.log: a slow one means the loop was busy with something else.
const slowest = [];
const kSlowestKept = 5;
const noteSlow = (rpc, ms, at) => {
  slowest.push({ rpc, ms: Math.round(ms), began: new Date(at).toISOString() });
  slowest.sort((a, b) => b.ms - a.ms);
  slowest.length = Math.min(slowest.length, kSlowestKept);
};
const stopPhases = {};  // the last escalation step a stop needed -> n
let opsDone = 0;
let opsInWindow = 0;
let begun = 0;  // when the load began, once every client is connected

const randInt = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));
const pick = (list) => list[randInt(0, list.length - 1)];
const last = (list) => list[list.length - 1];

const unary = (client, method, req) => new Promise((resolve) => {
  client[method](req, { deadline: Date.now() + kUnaryDeadlineMs }, (err, value) =>
    resolve(err ? { code: err.code, details: err.details } : { code: OK, value }));
});

// Reads a server stream to its end: its messages and its status.
const drain = (call) => new Promise((resolve) => {
  const messages = [];
  let status = null;
  let ended = false;
  const settle = () => {
    if (status && (ended || status.code !== OK)) {
      resolve({ code: status.code, details: status.details, messages });
    }
  };
  call.on('data', (m) => messages.push(m));
  call.on('end', () => { ended = true; settle(); });
  call.on('error', () => {});  // the status says the same
  call.on('status', (s) => { status = s; settle(); });
});

// What any view of a machine must satisfy, whenever it was taken.
function checkView(m, where) {
  if (m.state === 'MACHINE_STATE_STOPPED' && (m.pid !== 0 || m.sockets?.containerd)) {
    problem(`${where}: '${m.name}' is stopped with pid ${m.pid}, containerd socket '${m.sockets?.containerd}'`);
  }
  if (m.state === 'MACHINE_STATE_RUNNING' && (m.pid <= 0 || !m.sockets?.containerd)) {
    problem(`${where}: '${m.name}' is running with pid ${m.pid}, containerd socket '${m.sockets?.containerd}'`);
  }
  if (m.state === 'MACHINE_STATE_ERROR') problem(`${where}: '${m.name}' is in error: ${m.error}`);
}

async function list(client) {
  const r = await unary(client, 'List', {});
  if (r.code !== OK) {
    problem(`List: ${codeName(r.code)} "${r.details}"`);
    return r;
  }
  r.value.machines.forEach((m) => checkView(m, 'List'));
  const got = r.value.machines.map((m) => m.name).sort().join(',');
  if (got !== allNames.join(',')) problem(`List: machines ${got}, expected ${allNames}`);
  return r;
}

async function get(client) {
  const name = pick(names);
  const r = await unary(client, 'Get', { name });
  if (r.code !== OK) {
    problem(`Get ${name}: ${codeName(r.code)} "${r.details}"`);
    return r;
  }
  if (r.value.name !== name) problem(`Get ${name}: answered with '${r.value.name}'`);
  checkView(r.value, 'Get');
  return r;
}

// Opens a watch with the snapshot, reads it and maybe a few live events,
// then cancels.
function watch(client) {
  const only = Math.random() < 0.5 ? '' : pick(names);
  const expected = only ? [only] : allNames;
  const more = randInt(0, 5);
  const call = client.Watch({ name: only, initial_snapshot: true },
    { deadline: Date.now() + kWatchDeadlineMs });
  return new Promise((resolve) => {
    const snapshot = [];
    let live = 0;
    let lastSequence = 0n;
    let linger = null;
    const where = `Watch '${only}'`;
    call.on('data', (e) => {
      if (e.kind === 'EVENT_KIND_MACHINE_SNAPSHOT') {
        if (live > 0) problem(`${where}: a snapshot event after live events`);
        snapshot.push(e.machine_name);
      } else {
        if (snapshot.length < expected.length) problem(`${where}: a live event before the snapshot ended`);
        if (only && e.machine_name !== only) problem(`${where}: an event of '${e.machine_name}'`);
        const sequence = BigInt(e.sequence);
        if (sequence <= lastSequence) problem(`${where}: sequence ${sequence} after ${lastSequence}`);
        lastSequence = sequence;
        live++;
      }
      if (e.machine) checkView(e.machine, `${where} ${e.kind}`);
      if (snapshot.length === expected.length && !linger) {
        if ([...snapshot].sort().join(',') !== expected.join(',')) {
          problem(`${where}: snapshot of ${snapshot}, expected ${expected}`);
        }
        linger = setTimeout(() => call.cancel(), randInt(0, 2000));
      }
      if (live >= more && linger) call.cancel();
    });
    call.on('error', () => {});
    call.on('status', (s) => {
      clearTimeout(linger);
      // Cancelled by this client, as every watch should end.
      if (s.code === grpc.status.CANCELLED && s.details === 'Cancelled on client' && linger) {
        return resolve({ code: OK });
      }
      const details = s.code === OK ? 'the stream ended by itself' : s.details;
      problem(`${where}: ${codeName(s.code)} "${details}" after ${snapshot.length} snapshot and ${live} live events`);
      resolve({ code: s.code, details });
    });
  });
}

const busyAs = (details) => Object.keys(kBusyStart).find((k) => kBusyStart[k].test(details));

async function start(client) {
  const name = pick(names);
  const r = await drain(client.Start({ name }, { deadline: Date.now() + kStartDeadlineMs }));
  if (r.code === OK) {
    const m = last(r.messages)?.machine;
    if (m?.state !== 'MACHINE_STATE_RUNNING') problem(`Start ${name}: ended OK with ${m?.state}`);
    else checkView(m, 'Start');
  } else if (r.code === grpc.status.FAILED_PRECONDITION && busyAs(r.details)) {
    r.outcome = `refused_${busyAs(r.details)}`;
  } else if (r.code === grpc.status.CANCELLED && r.details === kStartCancelled) {
    r.outcome = 'cancelled_by_stop';
  } else {
    problem(`Start ${name}: ${codeName(r.code)} "${r.details}"`);
  }
  return r;
}

async function stop(client) {
  const name = pick(names);
  const force = Math.random() < kForceShare;
  const r = await stopMachine(client, name, force);
  if (r.code === grpc.status.FAILED_PRECONDITION && kBusyStop.test(r.details)) r.outcome = 'refused';
  else if (r.code !== OK) problem(`Stop ${name}: ${codeName(r.code)} "${r.details}"`);
  return r;
}

async function stopMachine(client, name, force) {
  const r = await drain(client.Stop({ name, force }, { deadline: Date.now() + kStopDeadlineMs }));
  if (r.code !== OK) return r;
  const m = last(r.messages)?.machine;
  if (m?.state !== 'MACHINE_STATE_STOPPED' || m.pid !== 0) {
    problem(`Stop ${name}: ended OK with ${m?.state}, pid ${m?.pid}`);
  }
  const steps = r.messages.filter((x) => x.phase && x.phase !== 'STOP_PHASE_UNSPECIFIED');
  // No qemu: only STOPPED, "already stopped".
  if (steps.length <= 1) {
    r.outcome = 'OK_already_stopped';
    return r;
  }
  // The step before STOPPED is the one that worked: agent, ACPI, quit or kill.
  const step = steps[steps.length - 2].phase;
  stopPhases[step] = (stopPhases[step] ?? 0) + 1;
  return r;
}

const ops = { List: list, Get: get, Watch: watch, Start: start, Stop: stop };

// Stops are paced by time, the other calls share what is left.
function pickOp() {
  const elapsed = Math.max(1, (Date.now() - begun) / 1000);
  const perSecond = Math.max(clientCount, opsDone / elapsed);
  if (Math.random() < names.length / stopEvery / perSecond) return 'Stop';
  const r = Math.random() * 100;
  if (r < 35) return 'List';
  if (r < 70) return 'Get';
  if (r < 85) return 'Watch';
  return 'Start';
}

// Connected before the load, so the first call's latency is not the connect.
const connect = (client) => new Promise((resolve, reject) =>
  client.waitForReady(Date.now() + kUnaryDeadlineMs, (err) => (err ? reject(err) : resolve(client))));

async function runClient(client, until) {
  try {
    while (Date.now() < until) {
      const op = pickOp();
      const at = Date.now();
      const t0 = performance.now();
      const r = await ops[op](client);
      const ms = performance.now() - t0;
      opsDone++;
      if (Date.now() <= until) opsInWindow++;
      if (op === 'List' || op === 'Get') noteSlow(op, ms, at);
      count(byCode, op, codeName(r.code));
      count(byOutcome, op, r.outcome ?? codeName(r.code));
      // Latency of work done: not of refusals, nor of stops with nothing to stop.
      if (r.code === OK && (r.outcome ?? 'OK') === 'OK' && latencies[op]) latencies[op].push(ms);
      await sleep(randInt(0, 2 * thinkMs));
    }
  } finally {
    client.close();
  }
}

// A machine's qemu, from its pid: alive, and a qemu of this machine.
function qemuOf(m) {
  try {
    const cmdline = readFileSync(`/proc/${m.pid}/cmdline`, 'utf8');
    return cmdline.includes('qemu-system') && cmdline.includes(m.dir);
  } catch {
    return false;
  }
}

// After the load: nothing in flight, so no machine may stay busy, and each
// one's state must match whether its qemu runs.
async function checkSettled(client) {
  const deadline = Date.now() + kSettleMs;
  let r;
  for (;;) {
    r = await unary(client, 'List', {});
    if (r.code !== OK) return problem(`List after the load: ${codeName(r.code)} "${r.details}"`);
    const busy = r.value.machines.filter((m) =>
      m.state === 'MACHINE_STATE_STARTING' || m.state === 'MACHINE_STATE_STOPPING');
    if (busy.length === 0) break;
    if (Date.now() > deadline) {
      return problem(`still busy ${kSettleMs} ms after the last call ended: ${
        busy.map((m) => `${m.name} ${m.state}`)}`);
    }
    await sleep(100);
  }
  const states = {};
  for (const m of r.value.machines) {
    states[m.name] = m.state.replace('MACHINE_STATE_', '').toLowerCase();
    checkView(m, 'after the load');
    const running = m.pid > 0 && qemuOf(m);
    if (m.state === 'MACHINE_STATE_RUNNING' && !running) {
      problem(`after the load: '${m.name}' is running but its qemu (pid ${m.pid}) is not`);
    }
    if (m.state === 'MACHINE_STATE_STOPPED' && running) {
      problem(`after the load: '${m.name}' is stopped but its qemu (pid ${m.pid}) runs`);
    }
  }
  return states;
}

// The end: each machine stopped (all at once: they do not wait on each
// other), then read back.
async function stopAll(client) {
  const took = {};
  await Promise.all(names.map(async (name) => {
    const t0 = performance.now();
    const r = await stopMachine(client, name, false);
    took[name] = Math.round(performance.now() - t0);
    if (r.code !== OK) problem(`final Stop ${name}: ${codeName(r.code)} "${r.details}"`);
    const g = await unary(client, 'Get', { name });
    if (g.code !== OK) return problem(`final Get ${name}: ${codeName(g.code)} "${g.details}"`);
    if (g.value.state !== 'MACHINE_STATE_STOPPED' || g.value.pid !== 0) {
      problem(`final Get ${name}: ${g.value.state}, pid ${g.value.pid}, error "${g.value.error}"`);
    }
  }));
  return took;
}

function percentiles(samples) {
  if (samples.length === 0) return { n: 0 };
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] * 10) / 10;
  return { n: s.length, p50: at(0.5), p95: at(0.95), max: at(1) };
}

// A hang anywhere (a call without an answer) ends the run with what is known.
const kWatchdogMs = (seconds + 360) * 1000;
setTimeout(() => {
  problem(`still running ${kWatchdogMs / 1000} s after the start: a call never ended`);
  console.log(JSON.stringify({ by_outcome: byOutcome, failures: failureList() }, null, 2));
  process.exit(1);
}, kWatchdogMs).unref();

const admin = newClient();
const first = await unary(admin, 'List', {});
if (first.code !== OK) {
  console.error(`FAIL: List before the load: ${codeName(first.code)} "${first.details}"`);
  process.exit(1);
}
const allNames = first.value.machines.map((m) => m.name).sort();
for (const n of names) {
  if (!allNames.includes(n)) {
    console.error(`FAIL: no machine '${n}' (there are: ${allNames})`);
    process.exit(1);
  }
}

const clients = await Promise.all(Array.from({ length: clientCount }, () => connect(newClient())))
  .catch((err) => {
    console.error(`FAIL: connecting ${clientCount} clients: ${err.message}`);
    process.exit(1);
  });
console.error(`stress: ${clientCount} clients, ${seconds} s, machines ${names}`);
begun = Date.now();
const until = begun + seconds * 1000;
await Promise.all(clients.map((client) => runClient(client, until)));
const loadMs = Date.now() - begun;
const drainMs = Date.now() - until;
console.error(`stress: ${opsDone} calls in ${loadMs} ms (the last ones ended ${drainMs} ms after the time was up)`);
const settled = await checkSettled(admin);
const finalStopMs = await stopAll(admin);
admin.close();

const starts = byOutcome.Start ?? {};
const summary = {
  clients: clientCount,
  seconds,
  machines: names,
  ops: opsDone,
  // Calls that ended within the time, per second of it.
  ops_per_second: Math.round((opsInWindow / seconds) * 10) / 10,
  drain_ms: drainMs,
  // A watch this client cancelled, as every watch should end, counts as OK.
  by_code: byCode,
  by_outcome: byOutcome,
  latency_ms: {
    List: percentiles(latencies.List),
    Get: percentiles(latencies.Get),
    Start_to_running: percentiles(latencies.Start),
    Stop: percentiles(latencies.Stop),
  },
  slowest_list_get: slowest,
  reached_running: starts.OK ?? 0,
  stop_last_step: stopPhases,
  states_after_load: settled,
  final_stop_ms: finalStopMs,
};
for (const rpc of ['List', 'Get']) {
  if (summary.latency_ms[rpc].max > maxWaitMs) {
    problem(`${rpc} took up to ${summary.latency_ms[rpc].max} ms (limit ${maxWaitMs}): see slowest_list_get`);
  }
}
summary.failures = failureList();
console.log(JSON.stringify(summary, null, 2));
if (failures.size > 0) {
  console.error(`FAIL: ${failures.size} distinct failures (above)`);
  process.exit(1);
}
process.exit(0);
