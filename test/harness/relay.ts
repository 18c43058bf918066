/**
 * Harness for relay component tests: a fake control plane (in-process HTTP on 127.0.0.1:0
 * serving the node routes from memory), lease minting with the real issuer, and an
 * in-process relay started through the same code path as tunnel-node.
 */
import { bootRelay } from '../../node/boot.js';
import { LEASE_ID_PREFIX } from '../../protocol/lease-claims.js';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventEmitter } from 'node:events';
import { buildJwks, issueLease, type IssueLeaseInput } from '../../control/ca/lease-issuer.js';
import type { SigningKey } from '../../control/keys/key-store.js';
import type { ConnectionEvent } from '../../protocol/api-types.js';
import type { Jwks } from '../../protocol/jwks.js';
import { parsePublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { parseConfig } from '../../node/config.js';
import type { Clock } from '../../shared/clock.js';
import type { LogFields, Logger } from '../../shared/logger.js';
import type { Relay } from '../../node/relay.js';
import type { Dialer } from '../../node/egress/dial.js';
import { FakeFirewall } from '../../node/egress/fake-firewall.js';
import { repoRoot } from './net.js';
import { tempDirRemovedAtExit } from '../../shared/testing/temp-dir.js';

/** The directory holding package.json (works from the TS sources and from dist/). */

export function signingKey(kid: string): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { kid, privateKey, publicKey };
}

export interface FakeControl {
  url: string;
  issuer: string;
  nodeId: string;
  enrollToken: string;
  keys: { lease: SigningKey; ca: SigningKey };
  jwks: Jwks;
  events: ConnectionEvent[];
  heartbeats: unknown[];
  /** Emits 'events' when a batch arrives, 'jwks' when the JWKS is asked for, 'heartbeat' when a heartbeat arrives, 'revocations' when a revocation poll arrives. */
  emitter: EventEmitter;
  revoke(leaseId: string, exp: number): void;
  requests: { jwks: number };
  /** Holds every JWKS request until the returned function is called (a slow control plane). */
  holdJwks(): () => void;
  /**
   * Leaves every heartbeat unanswered (a control plane that stopped answering, as under SIGSTOP)
   * until the returned function is called, which answers them all. Emits 'heartbeat' as each arrives.
   */
  holdHeartbeats(): () => void;
  /**
   * Answers every heartbeat 503 DATABASE_UNAVAILABLE with Retry-After: 1 (a control plane whose
   * database is restarting) until the returned function is called. Each is still recorded in
   * `heartbeats` and emits 'heartbeat' as it arrives.
   */
  refuseHeartbeats(): () => void;
  /**
   * Answers every heartbeat with a server_time `ms` ahead of this host's clock (behind when
   * negative), as a control plane would to a relay whose clock is `ms` behind, until the returned
   * function is called.
   */
  offsetServerTime(ms: number): () => void;
  /**
   * Answers every event batch 503 (a control plane that is down: the relay keeps its events
   * queued, up to --events-queue-max) until the returned function is called.
   */
  refuseEvents(): () => void;
  /**
   * Answers every revocation poll 503 (a control plane that is down, or cut off from the relay)
   * until the returned function is called. Emits 'revocations' as each poll arrives.
   */
  refuseRevocations(): () => void;
  /**
   * The node credential replaced (the node enrolled again elsewhere): the relay's own is answered
   * 401 until the returned function puts it back.
   */
  replaceCredential(): () => void;
  /**
   * A control plane that does not serve the relay's API level (older than the relay): every
   * request is answered 400 API_LEVEL_UNSUPPORTED until the returned function is called.
   */
  refuseLevel(): () => void;
  stop(): Promise<void>;
}

export async function startFakeControl(): Promise<FakeControl> {
  const keys = { lease: signingKey('lease-1'), ca: signingKey('ca-1') };
  const nodeId = `node_${randomBytes(4).toString('hex')}`;
  const issuedToken = `nt_${randomBytes(16).toString('hex')}`;
  let nodeToken = issuedToken;
  const enrollToken = `et_${randomBytes(16).toString('hex')}`;
  const revocations: { lease_id: string; exp: number }[] = [];
  const emitter = new EventEmitter();
  /** Holds the requests that wait on `field` until the returned function is called. */
  const hold = (field: 'jwksHeld' | 'heartbeatsHeld') => {
    let release = () => {};
    fc[field] = new Promise<void>((r) => (release = r));
    return () => {
      fc[field] = undefined;
      release();
    };
  };
  const fc = {
    issuer: '',
    url: '',
    nodeId,
    enrollToken,
    keys,
    jwks: buildJwks([
      { kid: keys.lease.kid, publicKey: keys.lease.publicKey, use: 'sig' },
      { kid: keys.ca.kid, publicKey: keys.ca.publicKey, use: 'ssh-ca' },
    ]),
    events: [] as ConnectionEvent[],
    heartbeats: [] as unknown[],
    emitter,
    requests: { jwks: 0 },
    jwksHeld: undefined as Promise<void> | undefined,
    heartbeatsHeld: undefined as Promise<void> | undefined,
    holdJwks: () => hold('jwksHeld'),
    holdHeartbeats: () => hold('heartbeatsHeld'),
    eventsRefused: false,
    heartbeatsRefused: false,
    serverTimeOffsetMs: 0,
    offsetServerTime(ms: number) {
      fc.serverTimeOffsetMs = ms;
      return () => {
        fc.serverTimeOffsetMs = 0;
      };
    },
    refuseHeartbeats() {
      fc.heartbeatsRefused = true;
      return () => {
        fc.heartbeatsRefused = false;
      };
    },
    refuseEvents() {
      fc.eventsRefused = true;
      return () => {
        fc.eventsRefused = false;
      };
    },
    revocationsRefused: false,
    refuseRevocations() {
      fc.revocationsRefused = true;
      return () => {
        fc.revocationsRefused = false;
      };
    },
    levelRefused: false,
    refuseLevel() {
      fc.levelRefused = true;
      return () => {
        fc.levelRefused = false;
      };
    },
    replaceCredential() {
      nodeToken = `nt_${randomBytes(16).toString('hex')}`;
      return () => {
        nodeToken = issuedToken;
      };
    },
    revoke(leaseId: string, exp: number) {
      revocations.push({ lease_id: leaseId, exp });
    },
    stop: async () => {},
  };
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json' });
    res.end(JSON.stringify(body));
  };
  const problem = (res: ServerResponse, status: number, code: string) =>
    send(res, status, { type: 'about:blank', title: code, status, code, request_id: 'req_fake' });
  const readJson = async (req: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const authed = req.headers.authorization === `Bearer ${nodeToken}`;
      if (fc.levelRefused) return problem(res, 400, 'API_LEVEL_UNSUPPORTED');
      if (req.method === 'GET' && url.pathname === '/.well-known/jwks.json') {
        fc.requests.jwks++;
        emitter.emit('jwks');
        await fc.jwksHeld;
        return send(res, 200, fc.jwks);
      }
      if (req.method === 'POST' && url.pathname === '/v1/nodes/enroll') {
        const body = (await readJson(req)) as { token?: string; host_key?: string };
        if (body.token !== enrollToken) return problem(res, 401, 'TOKEN_INVALID');
        parsePublicKeyLine(body.host_key ?? '');
        return send(res, 200, { node_id: nodeId, name: 'relay-test', node_token: nodeToken, issuer: fc.issuer });
      }
      if (!url.pathname.startsWith('/v1/nodes/self/')) return problem(res, 404, 'NOT_FOUND');
      if (!authed) return problem(res, 401, 'UNAUTHENTICATED');
      if (req.method === 'POST' && url.pathname === '/v1/nodes/self/heartbeat') {
        fc.heartbeats.push(await readJson(req));
        emitter.emit('heartbeat');
        if (fc.heartbeatsRefused) {
          res.setHeader('retry-after', '1');
          return problem(res, 503, 'DATABASE_UNAVAILABLE');
        }
        await fc.heartbeatsHeld;
        return send(res, 200, { server_time: new Date(Date.now() + fc.serverTimeOffsetMs).toISOString() });
      }
      if (req.method === 'GET' && url.pathname === '/v1/nodes/self/revocations') {
        emitter.emit('revocations');
        if (fc.revocationsRefused) return problem(res, 503, 'UNAVAILABLE');
        const after = Number(url.searchParams.get('after') ?? '0');
        return send(res, 200, { cursor: String(revocations.length), revocations: revocations.slice(after) });
      }
      if (req.method === 'POST' && url.pathname === '/v1/nodes/self/events') {
        if (fc.eventsRefused) return problem(res, 503, 'UNAVAILABLE');
        const body = (await readJson(req)) as { events: ConnectionEvent[] };
        fc.events.push(...body.events);
        emitter.emit('events', body.events);
        return send(res, 202, { accepted: body.events.length, rejected: [] });
      }
      return problem(res, 404, 'NOT_FOUND');
    })().catch(() => problem(res, 500, 'INTERNAL'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  fc.url = `http://127.0.0.1:${port}`;
  fc.issuer = fc.url;
  fc.stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return fc;
}

export type Grant = IssueLeaseInput['grant'];

export interface MintOptions {
  grant: Grant;
  clientPublicKey: KeyObject;
  user?: string;
  /** The user's id, the lease's subject (the member the relay counts): `usr_<user>` unless given. */
  userId?: string;
  nodeId?: string;
  ttlSeconds?: number;
  notBefore?: Date;
  keys?: { lease: SigningKey; ca: SigningKey };
  issuer?: string;
}


/** Mints a lease and its certificate with the real issuer (control/ca/lease-issuer.ts). */
export async function mintLease(fc: FakeControl, o: MintOptions) {
  const notBefore = o.notBefore ?? new Date();
  // The format the control plane issues (protocol/lease-claims.ts): the revocation feed carries only such ids.
  const leaseId = `${LEASE_ID_PREFIX}_${randomBytes(16).toString('hex')}`;
  return issueLease(o.keys ?? fc.keys, {
    issuer: o.issuer ?? fc.issuer,
    leaseId,
    serial: randomBytes(8).readBigUInt64BE(),
    userId: o.userId ?? `usr_${o.user ?? 'alice'}`,
    userName: o.user ?? 'alice',
    nodeId: o.nodeId ?? fc.nodeId,
    grant: o.grant,
    clientPublicKey: rawPublicKey(o.clientPublicKey),
    notBefore,
    expiresAt: new Date(notBefore.getTime() + (o.ttlSeconds ?? 600) * 1000),
  });
}

export interface LogLine {
  level: string;
  msg: string;
  fields: LogFields;
}

/** A logger that keeps lines and lets tests wait for one (events, not sleeps). */
export class TestLogger extends EventEmitter implements Logger {
  lines: LogLine[] = [];
  #base: LogFields;
  #root: TestLogger;
  constructor(base: LogFields = {}, root?: TestLogger) {
    super();
    this.#base = base;
    this.#root = root ?? this;
  }
  #emit(level: string, msg: string, fields: LogFields = {}) {
    const line = { level, msg, fields: { ...this.#base, ...fields } };
    this.#root.lines.push(line);
    this.#root.emit('line', line);
    if (process.env.TUNNEL_TEST_LOG) process.stderr.write(`${JSON.stringify(line)}\n`);
  }
  info(msg: string, fields?: LogFields) {
    this.#emit('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields) {
    this.#emit('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields) {
    this.#emit('error', msg, fields);
  }
  child(fields: LogFields): Logger {
    return new TestLogger({ ...this.#base, ...fields }, this.#root);
  }
  /** Resolves with the first line (already logged after `since`, or future) matching. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 20_000, since = 0): Promise<LogLine> {
    const hit = this.lines.slice(since).find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('line', on);
        reject(new Error(`timed out waiting for a log line (${timeoutMs} ms)`));
      }, timeoutMs);
      const on = (l: LogLine) => {
        if (!pred(l)) return;
        clearTimeout(timer);
        this.off('line', on);
        resolve(l);
      };
      this.on('line', on);
    });
  }
}

export interface StartedRelay {
  relay: Relay;
  port: number;
  metricsPort: number;
  hostKeyLine: string;
  dataDir: string;
  logger: TestLogger;
  stop(): Promise<void>;
}

/** Starts a relay in-process against `fc`, enrolling on first use of `dataDir`. */
export async function startRelay(
  fc: Pick<FakeControl, 'url' | 'enrollToken'>,
  /** `egressDial`: dials egress targets in place of the relay's own (a test holds a dial's answer back). */
  opts: { dataDir?: string; args?: string[]; clock?: Clock; logger?: TestLogger; egressDial?: Dialer } = {},
): Promise<StartedRelay> {
  const dataDir = opts.dataDir ?? tempDirRemovedAtExit('tunnel-node-');
  const parsed = parseConfig(
    [
      '--control-url', fc.url,
      '--data-dir', dataDir,
      '--listen', '127.0.0.1:0',
      '--metrics-listen', '127.0.0.1:0',
      '--advertise', '127.0.0.1:2222',
      '--enroll-token', fc.enrollToken,
      '--auth-failures-per-minute', '10000',
      '--drain-timeout', '2s',
      ...(opts.args ?? []),
    ],
    {},
  );
  if (parsed.kind !== 'run') throw new Error('unexpected help');
  const logger = opts.logger ?? new TestLogger();
  const booted = await bootRelay(parsed.config, logger, {
    firewall: new FakeFirewall(),
    controlTimeoutMs: 2000,
    version: 'test',
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.egressDial ? { egressDial: opts.egressDial } : {}),
  });
  return {
    relay: booted.relay,
    port: booted.addrs.ssh.port,
    metricsPort: booted.addrs.metrics.port,
    hostKeyLine: booted.hostKeyLine,
    dataDir,
    logger,
    stop: () => booted.stop(),
  };
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export { repoRoot };
