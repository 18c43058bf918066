/**
 * The relay's memory (issue 11, target 3), measured on the real `tunnel-node` process of a
 * bench/lib/relay-stack.ts stack (VmRSS from /proc):
 * - idle: a fresh relay with no connection;
 * - per idle exposure connection: `count` ssh2 clients in this process, each with its own
 *   exposure and control-issued expose lease, holding a `tcpip-forward` and moving nothing;
 * - per saturated stream: X and Y connected the way the CLI connects (cli/ssh/relay-connection.ts:
 *   `tunnel-cli` identification, adaptive windows), Y pushing `bytes` as fast as it can: first 1
 *   stream on the fresh relay ("cold": its RSS before is the relay's at rest after IDLE_STEADY_S,
 *   what an idle relay holds, so the one-time growth of V8's heap, compiler and malloc's arenas
 *   that a relay's first stream causes is counted), then, on the same relay, 1 stream and 4
 *   streams at once ("warm": each above the RSS at rest just before it); RSS sampled during each
 *   push, the median and the peak reported above that "before", the RSS at rest after the last
 *   push (what the relay kept), and the relay's CPU seconds per GiB pushed (what collections
 *   cost: compare flags in one run).
 * Each takes a RelayVariant: node flags and tunnel-node flags for the relay (it restarts with them).
 * Used by bench:footprint (its relay rows) and bench:relay (idle exposures).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { fetch } from 'undici';
import { connectRelay } from '../../cli/ssh/relay-connection.js';
import { adaptWindow } from '../../cli/ssh/windows.js';
import type { LeaseIssued } from '../../protocol/api-types.js';
import { parseCertificateLine } from '../../protocol/ssh-cert.js';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { connectWithCertificate } from '../../test/node/ssh2-cert-client.js';
import { closeAll, forwardIn, mapLimit } from './idle-clients.js';
import { track } from './openssh.js';
import { cpuSeconds, rssBytes, sampler } from './proc.js';
import type { RelayStack } from './relay-stack.js';

const settle = () => new Promise((r) => setTimeout(r, 1000)); // memory at rest: waiting is the point
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export interface IdleExposures {
  count: number;
  /** Relay RSS before the clients connected, after IDLE_STEADY_S idle (bytes). */
  idle: number;
  /** RSS with all of them connected, after IDLE_STEADY_S idle. */
  loaded: number;
  per: number;
  /** The same 1 s after the last one connected (the connection burst's garbage still in it). */
  perJustConnected: number;
}

/** How the relay runs for a measurement: node flags and tunnel-node flags (e.g. --gc-every 0). */
export interface RelayVariant {
  nodeArgs: string[];
  args: string[];
}

/** Credentials for idle exposure connections: an exposure and a control-issued expose lease each. */
export interface IdleCredential {
  name: string;
  privateKey: KeyObject;
  certificate: ReturnType<typeof parseCertificateLine>;
}

/** Creates `count` exposures (idle-0 ...) and an expose lease (1 h) for each, through the API. */
export async function idleCredentials(stack: RelayStack, count: number, log: (m: string) => void): Promise<IdleCredential[]> {
  const names = Array.from({ length: count }, (_, i) => `idle-${i}`);
  log(`creating ${count} exposures and expose leases through the API`);
  return mapLimit(names, 8, async (name) => {
    await stack.exposure(name);
    const { privateKey } = generateKeyPairSync('ed25519');
    const issued = await stack.lease({ kind: 'expose', exposure: name, port: 22, ttl_seconds: 3600 }, formatPublicKeyLine(rawPublicKey(privateKey)));
    return { name, privateKey, certificate: parseCertificateLine(issued.certificate) };
  });
}

/**
 * Relay memory per idle exposure connection: one ssh2 client per credential (idleCredentials),
 * each holding its exposure's `tcpip-forward`, on a fresh relay (with `nodeArgs`). The leases
 * can be reused for another measurement (other node flags) within their hour.
 */
export async function idleExposures(
  stack: RelayStack,
  countOrCreds: number | IdleCredential[],
  log: (m: string) => void,
  variant?: RelayVariant,
): Promise<IdleExposures> {
  const creds = typeof countOrCreds === 'number' ? await idleCredentials(stack, countOrCreds, log) : countOrCreds;
  const count = creds.length;
  const relay = await stack.restartRelay(variant?.nodeArgs, variant?.args); // fresh process: memory figures do not carry over
  // The baseline at rest too (start-up's garbage collected), as the loaded figure below.
  await new Promise((r) => setTimeout(r, IDLE_STEADY_S * 1000));
  const idle = median(Array.from({ length: 5 }, () => rssBytes(relay.pid)));
  log(`opening ${count} idle connections, each holding a tcpip-forward`);
  const clients: Client[] = [];
  try {
    let done = 0;
    await mapLimit(creds, 16, async (c) => {
      const client = await connectWithCertificate({ port: relay.sshPort, username: stack.user, privateKey: c.privateKey, certificate: c.certificate, hostKeyLine: stack.hostKeyLine });
      client.on('error', () => {});
      clients.push(client);
      await forwardIn(client, c.name, 22);
      if (++done % 1000 === 0) log(`${done} connected`);
    });
    const health = (await (await fetch(`http://127.0.0.1:${relay.metricsPort}/healthz`)).json()) as { connections: number; exposures_online: number };
    if (health.connections !== count || health.exposures_online !== count) throw new Error(`relay holds ${health.connections} connections, ${health.exposures_online} exposures`);
    await settle();
    const window = async () => {
      const s = sampler(() => rssBytes(relay.pid), 100);
      await new Promise((r) => setTimeout(r, 2000));
      return median(s.stop());
    };
    const justConnected = await window();
    // Idle means idle: after V8's memory reducer has collected the connection burst's garbage.
    await new Promise((r) => setTimeout(r, IDLE_STEADY_S * 1000));
    const loaded = await window();
    return { count, idle, loaded, per: (loaded - idle) / count, perJustConnected: (justConnected - idle) / count };
  } finally {
    await closeAll(clients);
  }
}

export interface StreamFootprint {
  /** 'cold': the first push on a fresh relay, above the idle relay at rest; 'warm': a later push, above the RSS at rest just before it. */
  phase: 'cold' | 'warm';
  /** Relay RSS at rest with X and Y connected, before the push (bytes). */
  before: number;
  streams: number;
  /** RSS above `before` during the push, per stream: median and peak of the samples. */
  perStreamMedian: number;
  perStreamPeak: number;
  mbps: number;
  /** The relay's CPU seconds (user + system) per GiB pushed through it. */
  cpuPerGiB: number;
}

export interface StreamFootprints {
  runs: StreamFootprint[];
  /** Relay RSS at rest (1 s) after the last push, with X and Y still connected. */
  after: number;
}

/** Connects as the CLI does, to the relay the lease names (the stack's relay). */
async function cliConnect(stack: RelayStack, body: Parameters<RelayStack['lease']>[0]): Promise<Client> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const issued: LeaseIssued = await stack.lease(body, formatPublicKeyLine(rawPublicKey(privateKey)));
  return connectRelay(issued, privateKey as KeyObject);
}

function forwardOut(client: Client, exposure: string): Promise<Duplex> {
  return new Promise((resolve, reject) =>
    client.forwardOut('127.0.0.1', 0, exposure, 22, (err, ch) => {
      if (err) return reject(err);
      adaptWindow(client, ch);
      resolve(ch);
    }),
  );
}

/** Writes `bytes` into `ch` with backpressure, then ends it. */
function push(ch: Duplex, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  return new Promise((resolve, reject) => {
    ch.once('error', reject);
    let left = bytes;
    const more = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!ch.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void ch.once('drain', more);
      }
      ch.end();
      resolve();
    };
    more();
  });
}

/**
 * Relay memory per saturated stream, with the CLI's own connection code at both ends: X accepts
 * every forwarded channel and discards what arrives (a sink as fast as this process can decrypt),
 * Y pushes `bytes` per stream through channels at once: 1 stream cold, then each of
 * `warmStreamCounts` warm (see the file comment).
 */
export async function streamFootprint(stack: RelayStack, warmStreamCounts: number[], bytes: number, log: (m: string) => void, variant?: RelayVariant): Promise<StreamFootprints> {
  const relay = await stack.restartRelay(variant?.nodeArgs, variant?.args);
  // Cold "before": the relay at rest, as the idle row measures it (start-up's garbage collected).
  const t0 = performance.now();
  const exposure = 'footprint-stream';
  await stack.exposure(exposure);
  const x = await cliConnect(stack, { kind: 'expose', exposure, port: 22, ttl_seconds: 3600 });
  const y = await cliConnect(stack, { kind: 'open', exposure, ttl_seconds: 3600 });
  let received = 0;
  let waiter: { target: number; resolve: () => void } | undefined;
  x.on('tcp connection', (_info, accept) => {
    const ch = accept();
    adaptWindow(x, ch, true);
    ch.on('data', (d: Buffer) => {
      received += d.length;
      if (waiter && received >= waiter.target) waiter.resolve();
    });
    ch.on('end', () => ch.end());
  });
  await forwardIn(x, exposure, 22);
  const runs: StreamFootprint[] = [];
  const rest = () => median(Array.from({ length: 5 }, () => rssBytes(relay.pid)));
  try {
    await new Promise((r) => setTimeout(r, Math.max(1000, IDLE_STEADY_S * 1000 - (performance.now() - t0)))); // memory at rest: waiting is the point
    for (const [phase, streams] of [['cold', 1], ...warmStreamCounts.map((n) => ['warm', n])] as ['cold' | 'warm', number][]) {
      if (runs.length > 0) await settle();
      const before = rest();
      log(`saturated streams (${phase}): ${streams} x ${(bytes / 2 ** 20).toFixed(0)} MiB`);
      const channels = await Promise.all(Array.from({ length: streams }, () => forwardOut(y, exposure)));
      const target = received + streams * bytes;
      const arrived = new Promise<void>((resolve) => (waiter = { target, resolve }));
      const s = sampler(() => rssBytes(relay.pid), 50);
      const p0 = performance.now();
      const cpu0 = cpuSeconds(relay.pid);
      await Promise.all([...channels.map((ch) => push(ch, bytes)), arrived]);
      const cpu = cpuSeconds(relay.pid) - cpu0;
      const secs = (performance.now() - p0) / 1000;
      const samples = s.stop();
      waiter = undefined;
      runs.push({
        phase,
        before,
        streams,
        perStreamMedian: (median(samples) - before) / streams,
        perStreamPeak: (Math.max(...samples) - before) / streams,
        mbps: (streams * bytes) / 1e6 / secs,
        cpuPerGiB: cpu / ((streams * bytes) / 1024 ** 3),
      });
    }
    await settle();
    return { runs, after: rest() };
  } finally {
    x.end();
    y.end();
  }
}

export interface IdleRelay {
  /** RSS 2 s after the relay said it was ready (bytes): start-up's garbage and grown young generation still in it. */
  afterStart: number;
  /**
   * RSS after `IDLE_STEADY_S` idle: the relay's own full collection 10 s after ready
   * (node/startup-memory.ts) and V8's memory reducer have collected start-up's garbage and
   * shrunk the young generation. What an idle relay holds.
   */
  steady: number;
  /** A bare `node` (an empty script waiting on a timer) started with the relay, after as long: the floor. */
  bareNode: number;
}

/** Seconds idle before the steady figure: V8's memory reducer ran at 10 to 20 s in this bench. */
export const IDLE_STEADY_S = 30;

/**
 * A fresh relay's RSS with nothing connected: median of 5 samples, 2 s after start and after
 * IDLE_STEADY_S; and a bare node's beside it, with the relay's node flags.
 */
export async function idleRelayRss(stack: RelayStack, variant?: RelayVariant): Promise<IdleRelay> {
  const relay = await stack.restartRelay(variant?.nodeArgs, variant?.args);
  const [cmd, ...args] = [...stack.wrap, process.execPath, ...(variant?.nodeArgs ?? []), '-e', 'setInterval(() => {}, 1 << 30)'];
  const bare = track(cmd!, args);
  try {
    const t0 = performance.now();
    const sample = (pid: number) => median(Array.from({ length: 5 }, () => rssBytes(pid)));
    await settle();
    await settle();
    const afterStart = sample(relay.pid);
    await new Promise((r) => setTimeout(r, IDLE_STEADY_S * 1000 - (performance.now() - t0))); // idle memory: waiting is the point
    return { afterStart, steady: sample(relay.pid), bareNode: sample(bare.pid) };
  } finally {
    await bare.stop();
  }
}
