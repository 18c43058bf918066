/**
 * A relay whose revocation feed has not answered for --revocation-max-stale (the control plane
 * down, or the path to it cut) cannot learn that a lease was revoked. It used to keep carrying and
 * admitting every lease it had until each expired (a day, at --max-lease-ttl's default). It fails
 * closed now, as for a refused credential: one error line, every connection closed, none admitted,
 * /healthz 503 revocations_stale, and all of it undone once a poll is answered and the feed read
 * to its end. In-process relay against the fake control plane; members are ssh2 clients with
 * certificates.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

describe('a relay whose revocation feed stops answering', { timeout: 60_000 }, () => {
  // Plain polls every 100 ms; stale after 1 s without an answer.
  const t = relayUnderTest(['--revocation-poll-interval', '100ms', '--revocation-wait', '0s', '--revocation-max-stale', '1s']);

  const drops = () => parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_preauth_drops_total', { reason: 'revocations_stale' });

  it('closes its connections after --revocation-max-stale, admits none, and is back once a poll is answered with the revocations made meanwhile', async () => {
    const { fc, relay } = t;
    const live = await t.member('alice');
    const from = relay.logger.lines.length;

    const restore = fc.refuseRevocations();
    let restored = false;
    try {
      const line = await relay.logger.waitFor((l) => l.level === 'error' && /revocation feed has not answered for 1s/.test(l.msg), 10_000, from);
      assert.equal(line.fields.connections, 1);
      await within(live.closed, 10_000, 'the live connection closed');
      const closing = await relay.logger.waitFor((l) => l.msg === 'closing connection', 5000, from);
      assert.equal(closing.fields.reason, 'revocations_stale');
      const h = relay.relay.health();
      assert.equal(h.ok, false);
      assert.equal(h.status, 'revocations_stale');
      assert.equal((h.revocations as { stale: boolean }).stale, true);
      await assert.rejects(t.member('bob'), 'a new connection is not admitted');
      assert.ok(drops() >= 1, 'counted as a pre-authentication drop');
      // One line for the episode, however many polls fail.
      await once(fc.emitter, 'revocations');
      await once(fc.emitter, 'revocations');
      assert.equal(relay.logger.lines.slice(from).filter((l) => /has not answered for/.test(l.msg)).length, 1);

      // A lease revoked while the relay could not hear it: known once the relay admits again.
      fc.revoke(live.leaseId, live.exp);
      restore();
      restored = true;
      await relay.logger.waitFor((l) => l.level === 'info' && /revocation feed answers again/.test(l.msg), 10_000, from);
      assert.equal(parsePrometheusText(relay.relay.metricsText()).value('tunnel_node_revocations_known', {}), 1);
      assert.equal(relay.relay.health().status, 'ok');
      assert.equal(relay.relay.health().ok, true);
      await t.member('dave');
    } finally {
      if (!restored) restore();
    }
  });
});
