// A third-party client of coved that has only the .proto files: lists
// machines, watches events, sees a machine it creates appear, switches on
// the reasons of coved's errors (google.rpc.ErrorInfo in the
// grpc-status-details-bin trailer), changes one setting through a FieldMask,
// boots the machine and sees an Update that needs a stopped machine, and a
// delete of a running one, refused with their reasons.
// Usage: node client.mjs PROTO_DIR SOCKET IMAGE_DIR
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const [protoDir, socket, image] = process.argv.slice(2);
const def = protoLoader.loadSync(
  ['cove/v1/machines.proto', 'cove/v1/daemon.proto', 'cove/v1/errors.proto'],
  { includeDirs: [protoDir], keepCase: true, enums: String, longs: String, defaults: true });
const cove = grpc.loadPackageDefinition(def).cove.v1;
const target = `unix://${socket}`;
const machines = new cove.Machines(target, grpc.credentials.createInsecure());
const daemon = new cove.Daemon(target, grpc.credentials.createInsecure());

// The error model every gRPC client library knows: decode the trailer.
const rpcTypes = new protobuf.Root();
rpcTypes.resolvePath = (origin, target) => `${protoDir}/${target}`;
rpcTypes.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
const RpcStatus = rpcTypes.lookupType('google.rpc.Status');
const ErrorInfo = rpcTypes.lookupType('google.rpc.ErrorInfo');
function errorInfo(err) {
  const [bin] = err.metadata?.get('grpc-status-details-bin') ?? [];
  if (!bin) fail(`no grpc-status-details-bin on: ${err.code} ${err.details}`);
  const status = RpcStatus.decode(bin);
  if (status.code !== err.code) fail(`details code ${status.code} != status ${err.code}`);
  const any = status.details.find((d) => d.type_url === 'type.googleapis.com/google.rpc.ErrorInfo');
  if (!any) fail(`no ErrorInfo in the details of: ${err.details}`);
  return ErrorInfo.toObject(ErrorInfo.decode(any.value), { defaults: true });
}
// Calls and expects an error: returns [grpc status code, ErrorInfo].
async function refused(promise, what) {
  try {
    await promise;
  } catch (e) {
    const info = errorInfo(e);
    if (info.domain !== 'cove.v1') fail(`${what}: domain ${info.domain}`);
    console.log(`${what}: ${e.code} ${info.reason} ${JSON.stringify(info.metadata)} "${e.details}"`);
    return [e.code, info];
  }
  fail(`${what} succeeded`);
}
const expectReason = async (promise, what, code, reason) => {
  const [got, info] = await refused(promise, what);
  if (got !== code || info.reason !== reason) {
    fail(`${what}: expected ${code} ${reason}, got ${got} ${info.reason}`);
  }
  return info;
};

const call = (client, method, req) => new Promise((resolve, reject) =>
  client[method](req, { deadline: Date.now() + 30000 }, (err, res) => err ? reject(err) : resolve(res)));
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };
setTimeout(() => fail('timed out after 300 s'), 300000).unref();

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
  spec: {
    cpus: 1, memory_bytes: String(1024 ** 3), disk_bytes: String(4 * 1024 ** 3), image, no_mounts: true,
  },
});
if (m.state !== 'MACHINE_STATE_STOPPED') fail(`created machine is ${m.state}`);
// Positive booleans: unset means the default, which coved fills in.
if (m.spec.foreign_binaries !== true) fail(`foreign_binaries of a new machine: ${m.spec.foreign_binaries}`);
const event = await created;
console.log(`event: ${event.kind} ${event.machine_name} seq ${event.sequence}`);

const after = await call(machines, 'List', {});
const names = after.machines.map((x) => x.name);
if (!names.includes('from-node')) fail(`list after create: ${names}`);

// Errors come back as gRPC status codes with a message for people and a
// reason for programs.
let info2 = await expectReason(call(machines, 'Get', { name: 'no-such' }), 'Get no-such',
  grpc.status.NOT_FOUND, 'MACHINE_NOT_FOUND');
if (info2.metadata.machine !== 'no-such') fail(`metadata: ${JSON.stringify(info2.metadata)}`);
await expectReason(call(machines, 'Create', { name: 'from-node', spec: { image } }), 'Create twice',
  grpc.status.ALREADY_EXISTS, 'NAME_TAKEN');
info2 = await expectReason(call(machines, 'Create', { name: 'Bad Name!', spec: { image } }),
  'Create a bad name', grpc.status.INVALID_ARGUMENT, 'INVALID_NAME');
if (info2.metadata.field !== 'name') fail(`metadata: ${JSON.stringify(info2.metadata)}`);

// Features: the client adapts to what this coved has.
for (const f of ['error-reasons', 'guest-network']) {
  if (!info.features.includes(f)) fail(`DaemonInfo.features lacks ${f}: ${info.features}`);
}
console.log(`features: ${info.features.join(' ')}`);

// Update with a FieldMask changes just what it names.
const updated = await call(machines, 'Update', {
  name: 'from-node',
  spec: { cpus: 2, memory_bytes: String(3 * 1024 ** 3), autostart: true },
  update_mask: { paths: ['cpus'] },
});
if (updated.spec.cpus !== 2) fail(`cpus after update: ${updated.spec.cpus}`);
if (updated.spec.memory_bytes !== String(1024 ** 3)) fail(`memory changed: ${updated.spec.memory_bytes}`);
if (updated.spec.autostart) fail('autostart changed though not in the mask');
const noForeign = await call(machines, 'Update', {
  name: 'from-node', spec: { foreign_binaries: false }, update_mask: { paths: ['foreign_binaries'] },
});
if (noForeign.spec.foreign_binaries !== false || noForeign.spec.cpus !== 2) {
  fail(`after foreign_binaries=false: ${JSON.stringify(noForeign.spec)}`);
}
info2 = await expectReason(call(machines, 'Update', {
  name: 'from-node', spec: { cpus: 3 }, update_mask: { paths: ['cpus', 'cpu_count'] },
}), 'Update an unknown path', grpc.status.INVALID_ARGUMENT, 'UNKNOWN_FIELD_PATH');
if (info2.metadata.field !== 'cpu_count') fail(`metadata: ${JSON.stringify(info2.metadata)}`);
await expectReason(call(machines, 'Update', {
  name: 'from-node', spec: { arch: 'aarch64' }, update_mask: { paths: ['arch'] },
}), 'Update the arch', grpc.status.INVALID_ARGUMENT, 'FIELD_IMMUTABLE');
await expectReason(call(machines, 'Update', { name: 'from-node', spec: { cpus: 3 } }),
  'Update without a mask', grpc.status.INVALID_ARGUMENT, 'UNKNOWN_FIELD_PATH');
if ((await call(machines, 'Get', { name: 'from-node' })).spec.cpus !== 2) {
  fail('a refused update changed the machine');
}

// Boot it; then a resize, which needs a stopped machine, is refused with its
// reason (as `cove start NAME --memory` does: Update, then Start).
const start = (req) => new Promise((resolve, reject) => {
  const stream = machines.Start(req, { deadline: Date.now() + 240000 });
  let last;
  stream.on('data', (r) => { last = r; });
  stream.on('error', reject);
  stream.on('end', () => resolve(last));
});
const begun = Date.now();
const ran = await start({ name: 'from-node' });
if (ran?.machine?.state !== 'MACHINE_STATE_RUNNING') fail(`start ended with ${JSON.stringify(ran)}`);
console.log(`running after ${Date.now() - begun} ms`);
info2 = await expectReason(call(machines, 'Update', {
  name: 'from-node', spec: { memory_bytes: String(2 * 1024 ** 3) }, update_mask: { paths: ['memory_bytes'] },
}), 'Update the memory of a running machine', grpc.status.FAILED_PRECONDITION, 'MACHINE_NOT_STOPPED');
if (info2.metadata.machine !== 'from-node' || info2.metadata.state !== 'running') {
  fail(`metadata: ${JSON.stringify(info2.metadata)}`);
}
info2 = await expectReason(start({ name: 'from-node' }), 'Start of a running machine',
  grpc.status.FAILED_PRECONDITION, 'MACHINE_NOT_STOPPED');
if (info2.metadata.machine !== 'from-node' || info2.metadata.state !== 'running') {
  fail(`metadata: ${JSON.stringify(info2.metadata)}`);
}
// Logs name their source with an enum.
const logs = await new Promise((resolve, reject) => {
  const chunks = [];
  const stream = machines.Logs({ name: 'from-node', source: 'LOG_SOURCE_CONSOLE', tail_lines: 5 });
  stream.on('data', (r) => chunks.push(r.data));
  stream.on('error', reject);
  stream.on('end', () => resolve(Buffer.concat(chunks).toString()));
});
if (!logs.length) fail('no console log');
const got = await call(machines, 'Get', { name: 'from-node' });
const containerd = got.services.find((s) => s.name === 'containerd');
if (containerd?.state !== 'SERVICE_STATE_READY') fail(`containerd: ${JSON.stringify(containerd)}`);
await expectReason(call(machines, 'Delete', { name: 'from-node', force: false }),
  'Delete a running machine', grpc.status.FAILED_PRECONDITION, 'MACHINE_NOT_STOPPED');
await new Promise((resolve, reject) => {
  const stream = machines.Stop({ name: 'from-node' }, { deadline: Date.now() + 120000 });
  stream.on('data', () => {});
  stream.on('error', reject);
  stream.on('end', resolve);
});
await call(machines, 'Delete', { name: 'from-node', force: false });
watch.cancel();
console.log(`PASS grpc-js client (${events.length} events seen)`);
process.exit(0);
