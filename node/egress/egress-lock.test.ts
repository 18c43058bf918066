import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ManualClock, systemClock } from '../../shared/clock.js';
import { noopLogger } from '../../shared/logger.js';
import { resolveBaseRules, parseResolvConf } from './base-rules.js';
import { EgressLock, type EgressError, type EgressLockOptions } from './egress-lock.js';
import { FakeFirewall } from './fake-firewall.js';
import { PortBlocks } from './port-blocks.js';

const base = { control: [{ address: '127.0.0.1', port: 8080 }], dns: [] };

async function lockWith(o: Partial<EgressLockOptions> = {}) {
  const firewall = new FakeFirewall();
  const revoked = new Set<string>();
  const lock = new EgressLock({ firewall, clock: systemClock, logger: noopLogger, connectTimeoutMs: 2000, isRevoked: (id) => revoked.has(id), ...o });
  await lock.start(base);
  return { lock, firewall, revoked };
}

const leaseRules = (fw: FakeFirewall) => fw.rules().filter((l) => l.includes('tunnel-lease='));
const inMinutes = (n: number, from = Date.now()) => new Date(from + n * 60_000);

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('EgressLock', () => {
  let server: Server;
  let port: number;
  const peers: number[] = [];
  before(async () => {
    server = createServer((s) => {
      peers.push(s.remotePort ?? 0);
      s.on('error', () => undefined); // clients here may reset
      s.end('hello\n');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  });
  after(() => server.close());

  it('a lease gets its rules when activated; they go when its last connection ends', async () => {
    const { lock, firewall } = await lockWith();
    const lease = { leaseId: 'lse_1', targets: [{ host: '10.77.1.10', port: 7000 }], expiresAt: inMinutes(10) };
    await lock.activate(lease, 's1');
    await lock.activate(lease, 's2');
    assert.equal(leaseRules(firewall).length, 1);
    assert.match(leaseRules(firewall)[0]!, /-d 10\.77\.1\.10\/32 .*--dport 7000 .*tunnel-lease=lse_1/);
    lock.release('s1');
    assert.deepEqual(firewall.leases(), ['lse_1']);
    lock.release('s2');
    await until(() => firewall.leases().length === 0);
    assert.deepEqual(leaseRules(firewall), []);
  });

  it('revocation removes the rules at once; a revoked or expired lease is never activated', async () => {
    const { lock, firewall, revoked } = await lockWith();
    await lock.activate({ leaseId: 'lse_r', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: inMinutes(10) }, 's1');
    lock.revoke('lse_r');
    await until(() => firewall.leases().length === 0);
    revoked.add('lse_r');
    await assert.rejects(lock.activate({ leaseId: 'lse_r', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: inMinutes(10) }, 's2'), (e: EgressError) => e.reason === 'egress_lease_revoked');
    await assert.rejects(lock.activate({ leaseId: 'lse_e', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: new Date(Date.now() - 1000) }, 's3'), (e: EgressError) => e.reason === 'egress_lease_expired');
    assert.deepEqual(firewall.leases(), []);
  });

  it('expiry removes the rules (sweep with a manual clock)', async () => {
    const clock = new ManualClock();
    const { lock, firewall } = await lockWith({ clock });
    await lock.activate({ leaseId: 'lse_x', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: inMinutes(10, clock.now().getTime()) }, 's1');
    clock.advance(9 * 60_000);
    lock.sweep();
    assert.deepEqual(firewall.leases(), ['lse_x']);
    clock.advance(60_000);
    lock.sweep();
    await until(() => firewall.leases().length === 0);
  });

  it('expiry removes the rules on its own timer, in real time', async () => {
    const { lock, firewall } = await lockWith();
    await lock.activate({ leaseId: 'lse_t', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: new Date(Date.now() + 300) }, 's1');
    assert.deepEqual(firewall.leases(), ['lse_t']);
    await until(() => firewall.leases().length === 0, 5000);
  });

  it('a target given as a name gets rules for the addresses it resolves to, and is dialled there', async () => {
    const { lock, firewall } = await lockWith({ lookup: async (h) => (h === 'db.lan' ? ['127.0.0.1'] : []) });
    await lock.activate({ leaseId: 'lse_n', targets: [{ host: 'db.lan', port }], expiresAt: inMinutes(10) }, 's1');
    assert.match(leaseRules(firewall)[0]!, new RegExp(`-d 127\\.0\\.0\\.1/32 .*--dport ${port} `));
    const sock = await lock.dial('lse_n', { host: 'db.lan', port });
    sock.destroy();
    await assert.rejects(lock.activate({ leaseId: 'lse_m', targets: [{ host: 'nowhere.lan', port }], expiresAt: inMinutes(10) }, 's2'), (e: EgressError) => e.reason === 'egress_resolve_failed');
    assert.deepEqual(firewall.leases(), ['lse_n']);
  });

  it('dials only active leases and their targets, with TCP_NODELAY and half-open allowed', async () => {
    const { lock } = await lockWith();
    await assert.rejects(lock.dial('lse_none', { host: '127.0.0.1', port }), (e: EgressError) => e.reason === 'egress_lease_inactive');
    await lock.activate({ leaseId: 'lse_d', targets: [{ host: '127.0.0.1', port }], expiresAt: inMinutes(10) }, 's1');
    await assert.rejects(lock.dial('lse_d', { host: '127.0.0.1', port: port + 1 }), (e: EgressError) => e.reason === 'egress_lease_inactive');
    const sock = await lock.dial('lse_d', { host: '127.0.0.1', port });
    assert.equal(sock.allowHalfOpen, true);
    const [data] = (await once(sock, 'data')) as [Buffer];
    assert.equal(data.toString(), 'hello\n');
    sock.destroy();
  });

  it('source-port blocks: each lease dials from its own block and its rules match --sport', async () => {
    const range = { first: 61200, last: 61263 };
    const { lock, firewall } = await lockWith({ sourcePorts: { range, perLease: 32 } });
    await lock.activate({ leaseId: 'lse_p1', targets: [{ host: '127.0.0.1', port }], expiresAt: inMinutes(10) }, 's1');
    await lock.activate({ leaseId: 'lse_p2', targets: [{ host: '127.0.0.1', port }], expiresAt: inMinutes(10) }, 's2');
    assert.match(leaseRules(firewall).find((l) => l.includes('lse_p1'))!, / --sport 61200:61231 /);
    assert.match(leaseRules(firewall).find((l) => l.includes('lse_p2'))!, / --sport 61232:61263 /);
    peers.length = 0;
    for (const id of ['lse_p1', 'lse_p2']) {
      const s = await lock.dial(id, { host: '127.0.0.1', port });
      s.resume();
      await once(s, 'end');
      s.destroy();
    }
    await until(() => peers.length === 2);
    assert.ok(peers[0]! >= 61200 && peers[0]! <= 61231, `lse_p1 dialled from ${peers[0]}`);
    assert.ok(peers[1]! >= 61232 && peers[1]! <= 61263, `lse_p2 dialled from ${peers[1]}`);
    await assert.rejects(lock.activate({ leaseId: 'lse_p3', targets: [{ host: '127.0.0.1', port }], expiresAt: inMinutes(10) }, 's3'), (e: EgressError) => e.reason === 'egress_no_port_block');
    lock.release('s1');
    await until(() => lock.status().source_port_blocks_free === 1);
    await lock.activate({ leaseId: 'lse_p3', targets: [{ host: '127.0.0.1', port }], expiresAt: inMinutes(10) }, 's3');
  });

  it('a firewall failure refuses the lease and is reported in status', async () => {
    const { lock, firewall } = await lockWith();
    firewall.failNext('iptables-restore: Permission denied');
    await assert.rejects(lock.activate({ leaseId: 'lse_f', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: inMinutes(10) }, 's1'), (e: EgressError) => e.reason === 'egress_firewall_failed');
    assert.equal(lock.status().failures, 1);
    assert.match(lock.status().last_error ?? '', /Permission denied/);
    assert.equal(lock.status().active_leases, 0);
  });

  it('stop removes every lease rule and keeps the chain (REJECT last)', async () => {
    const { lock, firewall } = await lockWith();
    await lock.activate({ leaseId: 'lse_s', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: inMinutes(10) }, 's1');
    await lock.stop();
    assert.equal(firewall.closed, true);
    assert.deepEqual(leaseRules(firewall), []);
    assert.match(firewall.rules().at(-1)!, /-j REJECT/);
    await assert.rejects(lock.activate({ leaseId: 'lse_s2', targets: [{ host: '10.0.0.1', port: 1 }], expiresAt: inMinutes(10) }, 's2'));
  });
});

describe('base rules and port blocks', () => {
  it('an IP control URL needs no DNS; a name is resolved and the resolvers are allowed', async () => {
    assert.deepEqual(await resolveBaseRules('http://10.77.0.10:8080'), { control: [{ address: '10.77.0.10', port: 8080 }], dns: [] });
    assert.deepEqual(await resolveBaseRules('https://[fd00::1]'), { control: [{ address: 'fd00::1', port: 443 }], dns: [] });
    const named = await resolveBaseRules('https://control.example', {
      lookup: async () => ['192.0.2.7', '192.0.2.7', '2001:db8::7'],
      readResolvConf: async () => '# comment\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nsearch lan\nnameserver bogus\n',
    });
    assert.deepEqual(named, { control: [{ address: '192.0.2.7', port: 443 }, { address: '2001:db8::7', port: 443 }], dns: ['10.0.0.53', 'fe80::1'] });
    assert.deepEqual(parseResolvConf(''), []);
  });

  it('port blocks are handed out once and come back', () => {
    const b = new PortBlocks({ first: 61000, last: 61127 }, 64);
    const x = b.take();
    const y = b.take();
    assert.deepEqual([x, y], [{ first: 61000, last: 61063 }, { first: 61064, last: 61127 }]);
    assert.equal(b.take(), undefined);
    b.give(x!);
    b.give(x!);
    assert.equal(b.available, 1);
    assert.throws(() => new PortBlocks({ first: 61000, last: 61010 }, 64), RangeError);
  });

  it('dead man\'s switch: the kernel deadline of lease rules is at most holdMs ahead and the live relay pushes it forward', async () => {
    const clock = new ManualClock(new Date('2026-11-24T12:00:00Z'));
    const { lock, firewall } = await lockWith({ clock, holdMs: 30_000 });
    const lease = { leaseId: 'lse_hold', targets: [{ host: '10.77.1.10', port: 7000 }], expiresAt: new Date('2026-11-24T13:00:00Z') };
    await lock.activate(lease, 's1');
    // Not the lease's expiry (an hour away) but 30 s from now: a dead relay's rules lapse then.
    assert.match(leaseRules(firewall)[0]!, /--datestop 2026-11-24T12:00:30 /);
    clock.advance(10_000);
    await lock.pushDeadlines();
    assert.match(leaseRules(firewall)[0]!, /--datestop 2026-11-24T12:00:40 /);
    // Near its real end the deadline is the lease's expiry.
    clock.set(new Date('2026-11-24T12:59:50Z'));
    await lock.pushDeadlines();
    assert.match(leaseRules(firewall)[0]!, /--datestop 2026-11-24T13:00:00 /);
    await lock.stop();
  });
});
