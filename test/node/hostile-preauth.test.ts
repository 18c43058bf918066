/**
 * Hostile clients, finding 3: sockets that never send an SSH identification line. They are held
 * to a deadline from TCP accept (--login-grace-time), counted as unauthenticated connections, and
 * capped per source address (--per-source-max-startups) and globally (--max-startups), while a
 * legitimate client from another address keeps moving data.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startHostileRelay, silentSocket, type HostileRelay } from './hostile-relay.js';

describe('hostile: sockets that never identify', { timeout: 300_000 }, () => {
  const relays: HostileRelay[] = [];
  after(async () => {
    for (const r of relays) await r.stop();
  });

  it('are closed at the login grace deadline, counted from accept', async () => {
    const h = await startHostileRelay(['--login-grace-time', '1s']);
    relays.push(h);
    const before = await h.metrics();
    const attackers = Array.from({ length: 8 }, () => silentSocket(h.relay.sshPort, '127.0.0.4'));
    // Each was admitted (the relay sent its banner) and then closed by the relay, not by us.
    assert.deepEqual(await Promise.all(attackers.map((a) => a.outcome)), Array<string>(8).fill('banner'));
    await Promise.all(attackers.map((a) => a.closed));
    const m = await h.metricsUntil((x) => x.value('tunnel_node_preauth_drops_total', { reason: 'login_grace' }) >= 8, 'grace drops counted');
    assert.equal(m.value('tunnel_node_preauth_drops_total', { reason: 'login_grace' }) - before.value('tunnel_node_preauth_drops_total', { reason: 'login_grace' }), 8);
    assert.equal(m.value('tunnel_node_unauthenticated_connections'), 0);
    await h.legitTransfer();
    assert.ok(h.alive());
  });

  it('are capped per source and in total, counted in the gauges, and a legitimate client still works', async () => {
    // A grace far longer than the test: every close seen here comes from a cap, not the deadline.
    const h = await startHostileRelay(['--login-grace-time', '10m', '--per-source-max-startups', '10', '--max-startups', '30']);
    relays.push(h);

    // One source opens 25: ten are served, fifteen closed at once without a banner.
    const first = Array.from({ length: 25 }, () => silentSocket(h.relay.sshPort, '127.0.0.2'));
    const outcomes = await Promise.all(first.map((a) => a.outcome));
    assert.equal(outcomes.filter((o) => o === 'banner').length, 10, outcomes.join(','));
    let m = await h.metrics();
    assert.equal(m.value('tunnel_node_preauth_drops_total', { reason: 'per_source' }), 15);
    assert.equal(m.value('tunnel_node_unauthenticated_connections'), 10);
    assert.ok(m.value('tunnel_node_connections') >= 11, 'the connections gauge counts sockets that never identified'); // + X
    // Another address is not affected by that source's cap.
    await h.legitTransfer();

    // Two more sources fill the global cap of 30; a fourth source is dropped for max_startups.
    const more = ['127.0.0.3', '127.0.0.5'].flatMap((ip) => Array.from({ length: 10 }, () => silentSocket(h.relay.sshPort, ip)));
    assert.ok((await Promise.all(more.map((a) => a.outcome))).every((o) => o === 'banner'));
    const over = silentSocket(h.relay.sshPort, '127.0.0.6');
    assert.equal(await over.outcome, 'closed');
    m = await h.metrics();
    assert.equal(m.value('tunnel_node_unauthenticated_connections'), 30);
    assert.equal(m.value('tunnel_node_preauth_drops_total', { reason: 'max_startups' }), 1);

    // The attacker gives up; the slots are free again and a legitimate client moves data.
    for (const a of [...first, ...more]) a.sock.destroy();
    await h.metricsUntil((x) => x.value('tunnel_node_unauthenticated_connections') === 0, 'slots released');
    await h.legitTransfer();
    assert.ok(h.alive());
  });
});
