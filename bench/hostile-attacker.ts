/**
 * One attacker of `npm run bench:hostile`, run as its own process so its CPU is not the bench's:
 * `node dist/bench/hostile-attacker.js SPEC.json`. It attacks for `seconds`, then prints one
 * JSON line of what happened to its connections and exits. Attacks (issue 8):
 *   preauth      sockets that never send an identification line, reopened when closed
 *   firehose     the X behind window-flood's exposure: sends as fast as it is let to every channel
 *                (prints "online" once bound)
 *   window-flood authenticated Ys that grant ~4 GiB of window on a channel to the firehose
 *                exposure and never read
 *   reply-flood  authenticated clients sending keepalive@openssh.com with want-reply, never reading
 *   channel-hog  one Y opening as many channels to the exposure as it is given, and holding them
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Client } from 'ssh2';
import { parseCertificateLine } from '../protocol/ssh-cert.js';
import { connectWithCertificate, keepaliveFlood, openDirect, windowFlood } from '../test/node/hostile-clients.js';

export interface AttackerCreds {
  privateKeyPem: string;
  certificate: string;
  user: string;
}

export interface AttackSpec {
  kind: 'preauth' | 'firehose' | 'window-flood' | 'reply-flood' | 'channel-hog';
  port: number;
  hostKeyLine: string;
  seconds: number;
  /** preauth: sockets held open, and the source addresses they come from (round robin). */
  sockets?: number;
  sources?: string[];
  /** Ys (window-flood, reply-flood, channel-hog: the first). */
  creds?: AttackerCreds[];
  /** firehose: X's credentials; firehose, window-flood and channel-hog: the exposure. */
  firehose?: AttackerCreds;
  exposure?: string;
}

export interface AttackReport {
  kind: string;
  /** Connections (or sockets) the attacker made. */
  connections: number;
  /** Of those, closed by the relay while the attack ran. */
  closedByRelay: number;
  /** Connections refused outright (closed before a banner, or failed to authenticate). */
  refused: number;
  /** Attack-specific figures. */
  detail: Record<string, number>;
}

const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as AttackSpec;
const until = Date.now() + spec.seconds * 1000;
const running = () => Date.now() < until;
const report: AttackReport = { kind: spec.kind, connections: 0, closedByRelay: 0, refused: 0, detail: {} };
const inc = (k: string, by = 1) => (report.detail[k] = (report.detail[k] ?? 0) + by);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function certOpts(c: AttackerCreds) {
  return { port: spec.port, username: c.user, privateKey: createPrivateKey(c.privateKeyPem), certificate: parseCertificateLine(c.certificate), hostKeyLine: spec.hostKeyLine };
}

/** Holds `sockets` silent sockets open; each slot reopens one second after the relay closed it. */
async function preauth(): Promise<void> {
  const sources = spec.sources ?? ['127.0.0.2'];
  const slot = async (i: number) => {
    while (running()) {
      report.connections++;
      const got = await new Promise<'banner' | 'closed'>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: spec.port, localAddress: sources[i % sources.length] });
        let banner = false;
        s.on('error', () => {});
        s.once('data', () => {
          banner = true;
          inc('admitted');
        });
        s.once('close', () => resolve(banner ? 'banner' : 'closed'));
        const t = setTimeout(() => s.destroy(), Math.max(0, until - Date.now()));
        s.once('close', () => clearTimeout(t));
      });
      if (!running()) break;
      if (got === 'closed') report.refused++;
      report.closedByRelay++;
      await sleep(1000);
    }
  };
  await Promise.all(Array.from({ length: spec.sockets ?? 1000 }, (_, i) => slot(i)));
}

async function firehose(): Promise<void> {
  const x = await connectWithCertificate(certOpts(spec.firehose!));
  x.on('error', () => {});
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  x.on('tcp connection', (_info, accept) => {
    const ch = accept();
    inc('channels');
    ch.on('error', () => {});
    const pump = () => {
      while (running() && ch.writable) if (!ch.write(chunk)) return void ch.once('drain', pump);
    };
    pump();
  });
  await new Promise<void>((resolve, reject) => x.forwardIn(spec.exposure!, 22, (err) => (err ? reject(err) : resolve())));
  process.stdout.write('online\n');
  await sleep(Math.max(0, until - Date.now()));
  x.destroy();
}

async function windowFloods(): Promise<void> {
  const floods = await Promise.all(
    spec.creds!.map(async (c) => {
      report.connections++;
      const f = await windowFlood(certOpts(c), spec.exposure!, 22);
      void f.closed.then(() => running() && report.closedByRelay++);
      return f;
    }),
  );
  await sleep(Math.max(0, until - Date.now()));
  for (const f of floods) f.client.destroy();
}

async function replyFloods(): Promise<void> {
  await Promise.all(
    spec.creds!.map(async (c) => {
      report.connections++;
      const client = await connectWithCertificate(certOpts(c));
      client.on('error', () => {});
      let closed = false;
      client.once('close', () => {
        closed = true;
        if (running()) report.closedByRelay++;
      });
      while (running() && !closed) {
        inc('requests', await keepaliveFlood(client, 200_000));
        await sleep(200);
      }
      client.destroy();
    }),
  );
}

async function channelHog(): Promise<void> {
  report.connections++;
  const y: Client = await connectWithCertificate(certOpts(spec.creds![0]!));
  y.on('error', () => {});
  y.once('close', () => running() && report.closedByRelay++);
  let held = 0;
  while (running()) {
    try {
      const ch = await openDirect(y, spec.exposure!, 22);
      ch.on('error', () => {});
      ch.resume();
      held++;
      report.detail.maxHeld = Math.max(report.detail.maxHeld ?? 0, held);
      ch.once('close', () => held--);
    } catch {
      inc('opensRefused');
      await sleep(100);
    }
  }
  y.destroy();
}

const attacks = { preauth, firehose, 'window-flood': windowFloods, 'reply-flood': replyFloods, 'channel-hog': channelHog };
attacks[spec.kind]().then(
  () => {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`attacker ${spec.kind} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.stdout.write(`${JSON.stringify({ ...report, error: String(err) })}\n`);
    process.exit(1);
  },
);
