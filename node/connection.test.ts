/**
 * RelayConnection's keepalive timeout and re-key limit count what they close: a connection already
 * closing for another reason (the first reason stands, end() does nothing more) is not counted
 * again as a keepalive timeout or a refused re-key. The relay used to count both whatever the
 * state. A real ssh2 server connection (its peer a bare socket that sent its identification line
 * and nothing more); ssh2's 'error' (client-timeout) and 'handshake' events are emitted on it, as
 * ssh2 emits them, so each case runs the same way every time. And a close whose release of what
 * the connection carried throws (a bug) still closes it: end() had marked it closing first, so the
 * fault's own end() did nothing and the connection stayed open.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import type { Connection } from 'ssh2';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { SshWriter } from '../protocol/ssh-wire.js';
import { ManualClock } from '../shared/clock.js';
import type { LogFields, Logger } from '../shared/logger.js';
import { parseConfig } from './config.js';
import type { VerifiedLease } from './auth/verify-client-cert.js';
import { RelayConnection, type RelayContext } from './connection.js';
import { randomIds } from './deps.js';
import { VirtualListeners } from './forwarding/virtual-listeners.js';
import { PerMemberLimit } from './per-member-limit.js';
import { LeaseRegistry } from './leases/lease-registry.js';
import { createRelayMetrics } from './metrics.js';
import { socketOf } from './ssh2-internals.js';

interface Line {
  level: string;
  msg: string;
  fields: LogFields;
}

function lineLogger(lines: Line[], base: LogFields = {}): Logger {
  const at = (level: string) => (msg: string, fields: LogFields = {}) => void lines.push({ level, msg, fields: { ...base, ...fields } });
  return { info: at('info'), warn: at('warn'), error: at('error'), child: (fields) => lineLogger(lines, { ...base, ...fields }) };
}

const parsed = parseConfig(
  ['--control-url', 'http://127.0.0.1:9', '--data-dir', '/nonexistent/tunnel-node-unit', '--listen', '127.0.0.1:0', '--advertise', '127.0.0.1:2222', '--max-rekeys-per-minute', '1'],
  {},
);
if (parsed.kind !== 'run') throw new Error('unexpected help');
const config = parsed.config;

describe('RelayConnection: a keepalive timeout or a re-key past the limit counts only a close it begins', () => {
  let server: ssh2.Server;
  let port = 0;
  /** The next connection's context, and who waits for it (one connection at a time). */
  let next: { ctx: RelayContext; made(c: { rc: RelayConnection; conn: Connection }): void } | undefined;
  const peers: Socket[] = [];

  before(async () => {
    const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
    server = new ssh2.Server({ hostKeys: [hostKey] }, (conn, info) => {
      const n = next;
      next = undefined;
      if (!n) throw new Error('a connection the test did not make');
      n.made({ rc: new RelayConnection(n.ctx, conn, info, () => {}), conn });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    for (const p of peers) p.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** A connection of the relay's own kind, its peer silent after its identification line. */
  async function connection(o: { release?: () => void; registry?: LeaseRegistry; lease?: VerifiedLease } = {}) {
    const lines: Line[] = [];
    const metrics = createRelayMetrics();
    const ctx = {
      config,
      clock: new ManualClock(0),
      ids: randomIds,
      logger: lineLogger(lines),
      metrics,
      registry: o.registry ?? { detach: () => undefined },
      auth: { verify: async () => ({ ok: true, lease: o.lease }), stillValid: () => true },
      listeners: new VirtualListeners({ online: () => undefined, offline: () => undefined }),
      reporter: { push: () => undefined },
      egress: { release: o.release ?? (() => undefined) },
      draining: () => false,
      memberConnections: new PerMemberLimit(config.limits.connectionsPerMember),
    } as unknown as RelayContext;
    const got = new Promise<{ rc: RelayConnection; conn: Connection }>((made) => (next = { ctx, made }));
    const peer = connect({ host: '127.0.0.1', port });
    peers.push(peer);
    peer.on('error', () => {});
    peer.resume();
    peer.write('SSH-2.0-unit_test\r\n');
    const { rc, conn } = await got;
    const text = () => metrics.registry.render();
    return {
      rc,
      conn,
      lines,
      sock: socketOf(conn),
      keepaliveTimeouts: () => counter(text(), 'tunnel_node_keepalive_timeouts_total'),
      leaseClosures: () => counter(text(), 'tunnel_node_lease_closures_total{reason="lease_revoked"}'),
      rekeyRefusals: () => counter(text(), 'tunnel_node_refused_requests_total{type="rekey_rate"}'),
      closing: () => lines.filter((l) => l.msg === 'closing connection').map((l) => l.fields.reason),
      faults: () => lines.filter((l) => l.level === 'error').length,
    };
  }

  const keepaliveTimeout = (conn: Connection) => conn.emit('error', Object.assign(new Error('Keepalive timeout'), { level: 'client-timeout' }));
  /** Three key exchanges back to back: the first is free, the second takes the one token of --max-rekeys-per-minute 1, the third is past it. */
  const rekeyPastLimit = (conn: Connection) => {
    for (let i = 0; i < 3; i++) conn.emit('handshake', {});
  };

  it('a keepalive timeout closes an open connection at once, and is counted', async () => {
    const c = await connection();
    keepaliveTimeout(c.conn);
    assert.equal(c.keepaliveTimeouts(), 1);
    assert.deepEqual(c.closing(), ['keepalive_timeout']);
    assert.equal(c.sock.destroyed, true);
    assert.equal(c.faults(), 0);
  });

  it('a keepalive timeout of a connection already closing cuts its socket at once, and is not counted', async () => {
    const c = await connection();
    c.rc.end('lease_revoked');
    assert.equal(c.sock.destroyed, false, 'closing: DISCONNECT sent, the socket ended, not yet destroyed');
    keepaliveTimeout(c.conn);
    assert.equal(c.sock.destroyed, true);
    assert.equal(c.keepaliveTimeouts(), 0);
    assert.deepEqual(c.closing(), ['lease_revoked']);
    assert.equal(c.faults(), 0);
  });

  it('re-keying past the limit closes an open connection, and is counted as a refused re-key', async () => {
    const c = await connection();
    rekeyPastLimit(c.conn);
    assert.equal(c.rekeyRefusals(), 1);
    assert.deepEqual(c.closing(), ['rekey_rate']);
    assert.equal(c.lines.filter((l) => l.msg === 'peer re-keys too often; disconnecting').length, 1);
    assert.equal(c.faults(), 0);
  });

  it('re-keying past the limit while already closing is neither refused nor counted', async () => {
    const c = await connection();
    c.rc.end('lease_revoked');
    rekeyPastLimit(c.conn);
    assert.equal(c.rekeyRefusals(), 0);
    assert.deepEqual(c.closing(), ['lease_revoked']);
    assert.equal(c.lines.filter((l) => l.msg === 'peer re-keys too often; disconnecting').length, 0);
    assert.equal(c.faults(), 0);
  });

  it('a close whose release of what the connection carried throws still closes it (a fault, counted once)', async () => {
    let throws = true;
    const c = await connection({
      release: () => {
        if (!throws) return;
        throws = false;
        throw new Error('release failed');
      },
    });
    // Through the guard, as every handler runs: the throw is the handler's fault, whose own end() then finds the connection closing.
    keepaliveTimeout(c.conn);
    assert.equal(c.faults(), 1);
    assert.deepEqual(c.closing(), ['keepalive_timeout']);
    assert.equal(c.sock.destroyed, true, 'the keepalive timeout cut the socket although the release before it threw');
    assert.equal(c.keepaliveTimeouts(), 1, 'the close the keepalive timeout began is counted although the release threw');

    const d = await connection({
      release: () => {
        throw new Error('release failed');
      },
    });
    // A throw in one release is a fault of the connection (counted under `close`), not of end()'s caller.
    assert.equal(d.rc.end('lease_revoked'), true);
    assert.equal(d.faults(), 1);
    assert.equal(d.sock.writableEnded, true, 'DISCONNECT sent and the socket ended although the release before it threw');
  });

  it('a revocation whose close throws in the release is still one the revocation began (counted by the registry as by the metric)', async () => {
    const registry = new LeaseRegistry({ clock: new ManualClock(0), maxConnectionsPerLease: 4 });
    const client = generateKeyPairSync('ed25519');
    const leaseId = `lse_${'0'.repeat(32)}`;
    const lease = { leaseId, deadline: new Date(3_600_000), certifiedKey: client.publicKey, claims: { kind: 'open', sub: 'usr_1' } } as unknown as VerifiedLease;
    const c = await connection({
      registry,
      lease,
      release: () => {
        throw new Error('release failed');
      },
    });
    // Authenticated as ssh2 would have it (the lease as verified, the session signed with its key): attached in the registry.
    const blob = Buffer.from('session data');
    const signature = new SshWriter().string('ssh-ed25519').string(sign(null, blob, client.privateKey)).toBuffer();
    const accepted = new Promise<void>((accept, reject) =>
      c.conn.emit('authentication', { method: 'publickey', username: 'alice', key: { algo: 'ssh-ed25519-cert-v01@openssh.com', data: Buffer.from('cert') }, signature, blob, accept, reject }),
    );
    await accepted;
    assert.equal(registry.size, 1);

    assert.equal(registry.revoke(leaseId), 1, 'the revocation began closing it');
    assert.equal(c.leaseClosures(), 1);
    assert.deepEqual(c.closing(), ['lease_revoked']);
    assert.equal(c.faults(), 1);
    assert.equal(c.sock.writableEnded, true);
    registry.close();
  });
});

/** A counter's value in Prometheus text (`name` with its labels as rendered), 0 when absent. */
function counter(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
