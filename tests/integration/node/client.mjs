// A third-party client of coved that has only the .proto files: lists
// machines, watches events, and sees a machine it creates appear.
// Usage: node client.mjs PROTO_DIR SOCKET IMAGE_DIR
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const [protoDir, socket, image] = process.argv.slice(2);
const def = protoLoader.loadSync(
  ['cove/v1/machines.proto', 'cove/v1/daemon.proto'],
  { includeDirs: [protoDir], keepCase: true, enums: String, longs: String, defaults: true });
const cove = grpc.loadPackageDefinition(def).cove.v1;
const target = `unix://${socket}`;
const machines = new cove.Machines(target, grpc.credentials.createInsecure());
const daemon = new cove.Daemon(target, grpc.credentials.createInsecure());

const call = (client, method, req) => new Promise((resolve, reject) =>
  client[method](req, { deadline: Date.now() + 30000 }, (err, res) => err ? reject(err) : resolve(res)));
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };
setTimeout(() => fail('timed out after 60 s'), 60000).unref();

const info = await call(daemon, 'GetInfo', {});
console.log(`coved ${info.version}, host ${info.host_arch}, auto accel ${info.auto_accel}`);
if (!info.version) fail('no version');

const before = await call(machines, 'List', {});
console.log(`machines before: ${before.machines.length}`);

// Watch, then create: the created event must arrive on the stream.
const events = [];
const watch = machines.Watch({ name: '', initial_snapshot: true });
const created = new Promise((resolve) => {
  watch.on('data', (e) => {
    events.push(e);
    if (e.kind === 'EVENT_KIND_MACHINE_CREATED' && e.machine_name === 'from-node') resolve(e);
  });
});
watch.on('error', (e) => { if (e.code !== grpc.status.CANCELLED) fail(`watch: ${e.message}`); });
await new Promise((r) => watch.on('metadata', r));  // the watch is established

const m = await call(machines, 'Create', {
  name: 'from-node',
  spec: { cpus: 1, memory_bytes: String(512 * 1024 * 1024), disk_bytes: String(2 * 1024 ** 3), image },
});
if (m.state !== 'MACHINE_STATE_STOPPED') fail(`created machine is ${m.state}`);
const event = await created;
console.log(`event: ${event.kind} ${event.machine_name} seq ${event.sequence}`);

const after = await call(machines, 'List', {});
const names = after.machines.map((x) => x.name);
if (!names.includes('from-node')) fail(`list after create: ${names}`);

// Errors come back as gRPC status codes with a message for people.
try {
  await call(machines, 'Get', { name: 'no-such' });
  fail('Get of a missing machine succeeded');
} catch (e) {
  if (e.code !== grpc.status.NOT_FOUND) fail(`expected NOT_FOUND, got ${e.code} ${e.message}`);
  console.log(`missing machine: NOT_FOUND "${e.details}"`);
}
await call(machines, 'Delete', { name: 'from-node', force: false });
watch.cancel();
console.log(`PASS grpc-js client (${events.length} events seen)`);
process.exit(0);
