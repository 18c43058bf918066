/**
 * The scaffold of the relay tests that drive an in-process relay with ssh2 clients: a fake control
 * plane and a relay started before the describe's tests (with `args`), members that connect with
 * a certificate the fake control plane's keys signed, and everything closed after them. In its
 * own file: test/node/hostile-clients.ts is imported by bench:hostile's attacker, which must not
 * load node:test or the fake control plane.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { after, before } from 'node:test';
import type { Client } from 'ssh2';
import type { SigningKey } from '../../control/keys/key-store.js';
import type { ConnectionEvent } from '../../protocol/api-types.js';
import type { Dialer } from '../../node/egress/dial.js';
import { mintLease, startFakeControl, startRelay, type FakeControl, type Grant, type StartedRelay } from '../harness/relay.js';
import { connectWithCertificate } from './ssh2-cert-client.js';

export interface Member {
  client: Client;
  /** Resolves when the client's connection closed. */
  closed: Promise<void>;
  leaseId: string;
  /** The lease's expiry (unix seconds). */
  exp: number;
  privateKey: KeyObject;
}

export interface RelayUnderTest {
  /** Set once the describe's `before` ran. */
  readonly fc: FakeControl;
  readonly relay: StartedRelay;
  /**
   * Mints a lease of `grant` for `user` (an `open` lease by default; signed with `keys`, else the
   * fake control plane's) and connects with it; the client is destroyed after the tests. `userId`:
   * the lease's subject, the member the relay counts (`usr_<user>` unless given); `ttlSeconds`: the
   * lease's life (600 s unless given).
   */
  member(user: string, o?: { grant?: Grant; keys?: { lease: SigningKey; ca: SigningKey }; userId?: string; ident?: string; ttlSeconds?: number }): Promise<Member>;
  /** Destroys `client` after the tests (one the test connected itself). */
  track<C extends Client>(client: C): C;
}

/** Call inside a describe: registers its before and after hooks. `egressDial` as startRelay's. */
export function relayUnderTest(args: string[] = [], o: { egressDial?: Dialer } = {}): RelayUnderTest {
  let fc: FakeControl | undefined;
  let relay: StartedRelay | undefined;
  const clients: Client[] = [];
  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc, { args, ...o });
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await relay?.stop();
    await fc?.stop();
  });
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('relayUnderTest: used before its before hook ran');
    return v;
  };
  const track = <C extends Client>(client: C): C => {
    clients.push(client);
    return client;
  };
  return {
    get fc() {
      return started(fc);
    },
    get relay() {
      return started(relay);
    },
    track,
    async member(user, o = {}) {
      const f = started(fc);
      const r = started(relay);
      const { privateKey } = generateKeyPairSync('ed25519');
      const lease = await mintLease(f, { grant: o.grant ?? { kind: 'open', exposure: 'anything' }, clientPublicKey: privateKey, user, ...(o.keys ? { keys: o.keys } : {}), ...(o.userId ? { userId: o.userId } : {}), ...(o.ttlSeconds ? { ttlSeconds: o.ttlSeconds } : {}) });
      const client = track(await connectWithCertificate({ port: r.port, username: user, privateKey, certificate: lease.certificate, hostKeyLine: r.hostKeyLine, ...(o.ident ? { ident: o.ident } : {}) }));
      client.on('error', () => {});
      return { client, closed: new Promise((resolve) => client.once('close', () => resolve())), leaseId: lease.claims.jti, exp: lease.claims.exp, privateKey };
    },
  };
}

/** The conn_close event of `leaseId`'s connection, once the relay has sent it to the fake control plane. */
export function connCloseOf(fc: FakeControl, leaseId: string): Promise<ConnectionEvent> {
  const find = () => fc.events.find((e) => e.type === 'conn_close' && e.lease_id === leaseId);
  return new Promise((resolve) => {
    const seen = () => {
      const e = find();
      if (!e) return;
      fc.emitter.off('events', seen);
      resolve(e);
    };
    fc.emitter.on('events', seen);
    seen();
  });
}
