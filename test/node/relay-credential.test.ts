/**
 * A relay whose node credential the control plane refuses (401: the node enrolled again, or was
 * removed) can no longer learn revocations. It used to log "revocation feed unreachable" and go on
 * carrying and admitting leases with what it knew, until restart (and after it). It fails closed
 * now: one error line, every connection closed, none admitted, /healthz 503 credential_rejected,
 * and all of it undone once the control plane answers its polls again. In-process relay against
 * the fake control plane; the member is an ssh2 client with a certificate.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

describe('a relay whose node credential the control plane refuses', { timeout: 60_000 }, () => {
  // Polls only when the test asks (pollRevocations), so each step follows the one before.
  const t = relayUnderTest(['--revocation-poll-interval', '1h', '--revocation-wait', '0s']);
  const member = (user: string) => t.member(user);

  const drops = () => parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_preauth_drops_total', { reason: 'credential_rejected' });

  it('closes its connections and admits none until the credential is accepted again', async () => {
    const { fc, relay } = t;
    const live = await member('alice');
    const from = relay.logger.lines.length;

    const restore = fc.replaceCredential();
    await relay.relay.pollRevocations();
    const line = await relay.logger.waitFor((l) => l.level === 'error' && /refuses this relay's node credential/.test(l.msg), 5000, from);
    assert.equal(line.fields.connections, 1);
    await within(live.closed, 10_000, 'the live connection closed');
    const closing = await relay.logger.waitFor((l) => l.msg === 'closing connection', 5000, from);
    assert.equal(closing.fields.reason, 'credential_rejected');
    const h = relay.relay.health();
    assert.equal(h.ok, false);
    assert.equal(h.status, 'credential_rejected');
    await assert.rejects(member('bob'), 'a new connection is not admitted');
    assert.ok(drops() >= 1, 'counted as a pre-authentication drop');
    // One line, not one per poll.
    await relay.relay.pollRevocations();
    assert.equal(relay.logger.lines.slice(from).filter((l) => /node credential/.test(l.msg)).length, 1);
    assert.equal(relay.logger.lines.slice(from).filter((l) => /revocation feed unreachable/.test(l.msg)).length, 0);

    restore();
    await relay.relay.pollRevocations();
    assert.equal(relay.relay.health().status, 'ok');
    await relay.logger.waitFor((l) => l.level === 'info' && /accepts this relay's node credential again/.test(l.msg), 5000, from);
    await member('carol');
  });
});

describe('a relay whose connection fails to close when its credential is refused', { timeout: 60_000 }, () => {
  // The revocation feed's own loop this time (every 100 ms), not polls the test asks for.
  const t = relayUnderTest(['--revocation-poll-interval', '100ms', '--revocation-wait', '0s']);

  it('closes every other connection all the same, keeps polling, and is back in service once the credential is accepted again', async () => {
    const { fc, relay } = t;
    const first = await t.member('dave');
    const second = await t.member('frank');
    const from = relay.logger.lines.length;
    // A bug in one connection's close (its end() throws; node/connection.ts closes it all the
    // same). Thrown out of the relay's loop over its connections, it left the connections after
    // it open (fail open), and out of the feed's onCredential callback it stopped the feed's loop
    // for good (no poll ever again: out of service after the credential was restored).
    let thrown = false;
    const failClose = (l: { msg: string; fields: Record<string, unknown> }) => {
      if (thrown || l.msg !== 'closing connection' || l.fields.reason !== 'credential_rejected') return;
      thrown = true;
      throw new Error('injected: a connection close that throws');
    };
    relay.logger.on('line', failClose);
    const restore = fc.replaceCredential();
    try {
      await relay.logger.waitFor((l) => l.level === 'error' && /refuses this relay's node credential/.test(l.msg), 5000, from);
      await within(first.closed, 10_000, 'a connection closed although its close threw');
      await within(second.closed, 10_000, 'the other connection closed too');
    } finally {
      relay.logger.off('line', failClose);
      restore();
    }
    assert.equal(thrown, true);
    const faults = relay.logger.lines.slice(from).filter((l) => l.level === 'error' && /connection handler failed/.test(l.msg));
    assert.equal(faults.length, 1, 'the throw is a fault of its connection');
    assert.equal(faults[0]!.fields.where, 'close');
    assert.equal(parsePrometheusText(relay.relay.metricsText()).value('tunnel_node_handler_faults_total', { where: 'close' }), 1);
    await relay.logger.waitFor((l) => l.level === 'info' && /accepts this relay's node credential again/.test(l.msg), 10_000, from);
    assert.equal(relay.relay.health().status, 'ok');
    await t.member('erin');
  });
});
