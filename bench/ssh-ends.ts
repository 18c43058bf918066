/**
 * `node dist/bench/ssh-ends.js`: CPU per byte of one end of an ssh2 connection in isolation, the
 * way Tunnel's CLI uses it, for A/B of a change on a busy machine. bench:e2e measures the whole
 * path (three Tunnel processes and OpenSSH's); its CPU figures swing by ±30% when other work
 * shares the cores. Here one child process is the end under test and the parent is its peer;
 * the variants alternate round by round in the same run, and each figure is the median.
 *
 *   sender   (like `tunnel open` pushing Y->X): reads a local TCP socket, writes an SSH channel
 *   receiver (like `tunnel expose`):            reads an SSH channel, writes a local TCP socket
 *
 * Both ends use ssh2 with Tunnel's patches (pooled padding; aes128-gcm, what the CLI negotiates).
 * Variants: `batched` (the SSH socket's writes batched per tick, node/write-batching.ts, as the
 * relay does) and `unbatched` (ssh2's one write per packet, as the CLI does: batching cost the
 * CLI's ends 5-9% here), both joined to the local socket with stream.pipe(); `join` (unbatched,
 * joined by the CLI's own cli/ssh/pipe.ts joinSocketAndChannel, with its gc pacer and send
 * backpressure, and its local socket paused until joined as the CLI's are, so the sender reads
 * straight into packets (cli/ssh/packet-reads.ts): the CLI's data path as it is). Build this file in two worktrees and alternate
 * `--variant join` runs between them to A/B a change to the CLI's join. `--node-arg` flags go to
 * the child (e.g. --node-arg=--max-semi-space-size=1 against a run without; --node-arg=--cpu-prof
 * --node-arg=--cpu-prof-dir=DIR writes a profile per round: the child exits by itself once it
 * reported). The peer (the parent) always batches, like the relay.
 *
 * Options: --bytes N (256 MiB per round) --rounds N (4) --role sender,receiver
 *          --variant batched,unbatched,join (all three) --node-arg FLAG (repeatable)
 *          --perf DIR (root: perf record and syscall counts of the child during each push, bench/lib/perf-attach.ts;
 *            with --node-arg=--perf-basic-prof for JS names)
 */
import { fork } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ssh2 from 'ssh2';
import { clientSocket, installPooledPadding, socketOf } from '../node/ssh2-internals.js';
import { batchWrites } from '../node/write-batching.js';
import { attachPerf, type PerfAttachment } from './lib/perf-attach.js';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { joinSocketAndChannel } from '../cli/ssh/pipe.js';

const GiB = 1024 ** 3;
const VARIANTS = ['batched', 'unbatched', 'join'] as const;
type Variant = (typeof VARIANTS)[number];
type Role = 'sender' | 'receiver';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    bytes: { type: 'string', default: String(256 * 1024 ** 2) },
    rounds: { type: 'string', default: '4' },
    role: { type: 'string', default: 'sender,receiver' },
    variant: { type: 'string', default: VARIANTS.join(',') },
    'node-arg': { type: 'string', multiple: true, default: [] },
    perf: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
const BYTES = Number(opts.bytes);

/** Writes `bytes` of 64 KiB chunks (a fresh Buffer each, as a socket read gives) with backpressure, then ends. */
async function push(out: Duplex | Socket, bytes: number): Promise<void> {
  for (let left = bytes; left > 0; left -= 65536) {
    if (!out.write(Buffer.alloc(Math.min(65536, left), 0x61))) await once(out, 'drain');
  }
  out.end();
}

/** Resolves once `bytes` arrived on `s`. */
function sink(s: Duplex | Socket, bytes: number): Promise<void> {
  let n = 0;
  return new Promise((resolve) =>
    s.on('data', (d: Buffer) => {
      n += d.length;
      if (n >= bytes) resolve();
    }),
  );
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** The child: the end under test. Reports its own CPU seconds per GiB. */
async function child(role: Role, variant: Variant, sshPort: number, localPort: number): Promise<void> {
  installPooledPadding();
  const client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: sshPort, username: 'u', hostVerifier: () => true, algorithms: { cipher: ['aes128-gcm@openssh.com'] } });
    client.setNoDelay(true);
    if (variant === 'batched') batchWrites(clientSocket(client));
  });
  const local = connect({ host: '127.0.0.1', port: localPort, allowHalfOpen: variant === 'join' });
  // Not reading until joined, as the CLI's local sockets (the join can then read into packets).
  if (variant === 'join') local.pause();
  await once(local, 'connect');
  local.setNoDelay(true);
  const ch = await new Promise<Duplex>((resolve, reject) => client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, c) => (err ? reject(err) : resolve(c))));
  if (opts.perf) {
    // --perf: the parent attaches perf now, before anything moves, and says go.
    const go = once(process, 'message');
    process.send!('ready');
    await go;
  }
  const c0 = process.cpuUsage();
  // The join may move the connection to a new socket (cli/ssh/packet-reads.ts): it returns the one it joined.
  let joined = local;
  if (variant === 'join') joined = joinSocketAndChannel(local, ch, () => {});
  else if (role === 'sender') local.pipe(ch);
  else ch.pipe(local); // pipe() ends the local socket at the channel's end
  // Done when everything has left this process: into the channel (sender) or the local socket (receiver).
  await once(role === 'sender' ? ch : joined, 'finish');
  const c = process.cpuUsage(c0);
  await new Promise<void>((resolve) => process.send!((c.user + c.system) / 1e6 / (BYTES / GiB), () => resolve()));
  client.end();
  joined.destroy();
  // Exits by itself (not killed by the parent), so that --node-arg=--cpu-prof writes its profile.
  process.exit(0);
}

let perfRound = 0;

/** One round: the peer (ssh2 server, and the local TCP end) here, the end under test in a child. */
async function round(role: Role, variant: Variant, hostKey: string): Promise<number> {
  let delivered!: Promise<void>;
  const ssh = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
    batchWrites(socketOf(conn));
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('tcpip', (accept) => {
      const ch = accept();
      if (role === 'sender') delivered = sink(ch, BYTES);
      else void push(ch, BYTES);
    });
  });
  const local = createServer((s) => {
    s.on('error', () => {});
    if (role === 'sender') void push(s, BYTES);
    else delivered = sink(s, BYTES);
  });
  const sshPort = await listen(ssh as unknown as Server);
  const localPort = await listen(local);
  const me = fileURLToPath(import.meta.url);
  const p = fork(me, ['child', role, variant, String(sshPort), String(localPort), '--bytes', String(BYTES), ...(opts.perf ? ['--perf', opts.perf] : [])], { execArgv: opts['node-arg'] });
  let perf: PerfAttachment | undefined;
  try {
    if (opts.perf) {
      await once(p, 'message');
      perf = await attachPerf(opts.perf, `${role}-${variant}-r${++perfRound}`, [{ what: `${role}-${variant}`, pid: p.pid! }]);
      p.send('go');
    }
    const [cpu] = (await once(p, 'message')) as [number];
    await perf?.stop();
    await delivered;
    return cpu;
  } finally {
    await perf?.stop();
    // The child exits once it reported (a profile with --cpu-prof takes a moment to write); killed if it hangs.
    if (p.exitCode === null && p.signalCode === null) await Promise.race([once(p, 'exit'), new Promise((r) => setTimeout(r, 30_000).unref())]);
    p.kill();
    ssh.close();
    local.close();
  }
}

async function main(): Promise<void> {
  if (opts.help) {
    process.stdout.write('usage: node dist/bench/ssh-ends.js [--bytes N] [--rounds N] [--role sender,receiver] [--variant batched,unbatched,join] [--node-arg FLAG ...] [--perf DIR]\n');
    return;
  }
  if (positionals[0] === 'child') {
    const [, role, variant, sshPort, localPort] = positionals;
    return child(role as Role, variant as Variant, Number(sshPort), Number(localPort));
  }
  const load0 = loadavg();
  const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const roles = opts.role.split(',').filter(Boolean) as Role[];
  const variants = opts.variant.split(',').filter(Boolean) as Variant[];
  const unknown = variants.filter((v) => !(VARIANTS as readonly string[]).includes(v));
  if (unknown.length || !variants.length) throw new Error(`--variant: one or more of ${VARIANTS.join(', ')} (got ${opts.variant})`);
  const rows: string[] = ['| end | variant | CPU s/GiB, median | rounds |', '| --- | --- | ---: | --- |'];
  for (const role of roles) {
    const got = new Map<Variant, number[]>(variants.map((v) => [v, []]));
    for (let i = 0; i < Number(opts.rounds); i++) for (const v of variants) got.get(v)!.push(await round(role, v, hostKey));
    for (const v of variants) {
      const xs = got.get(v)!;
      const median = [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      rows.push(`| ${role} | ${v} | ${median.toFixed(2)} | ${xs.map((x) => x.toFixed(2)).join(' ')} |`);
    }
  }
  process.stdout.write(`${rows.join('\n')}\n\n${(BYTES / 2 ** 20).toFixed(0)} MiB per round; the child's own CPU (user + system, all threads); child node flags: ${opts['node-arg'].join(' ') || 'none'}.\n`);
  process.stdout.write(`Load average at the start: ${load0.map((x) => x.toFixed(2)).join(' ')}; at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}.\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`ssh-ends failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
