/**
 * Hostile members (h-front): in-band renewals (`lease-renew@tunnel`). A renewal whose
 * certificate names a key the relay did not know waited for the JWKS refresh it started; ssh2
 * answers global requests in order, so while the control plane was slow to answer (up to its
 * timeout) every request the member sent after it (a renewal holding its 35 KB packet, a
 * keepalive) piled up in the relay, outside the send budget, as fast as the member could send.
 * A renewal now never waits on the network: it is refused and the refresh goes on behind it.
 * - Each renewal costs the relay two signature verifications and a log line, and nothing bounded
 *   how many a connection sent: one member pipelining its own certificate made the relay verify
 *   3,000 renewals in 2.6 s (1.4 s of its CPU). --max-renewals-per-minute does.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { mintLease, signingKey } from '../harness/relay.js';
import { relayUnderTest } from './relay-under-test.js';
import { renewLease } from './ssh2-cert-client.js';
import { within } from './ssh-tools.js';

describe('hostile: renewals while the control plane is slow', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--jwks-min-refresh-interval', '0ms']);

  it('a renewal naming an unknown key is answered at once, not after the JWKS refresh it starts', async () => {
    const { fc, relay } = t;
    const grant = { kind: 'open' as const, exposure: 'renewed' };
    const { client, privateKey } = await t.member('renewer', { grant });

    // A certificate of a CA the relay does not know: the renewal asks for a fresh JWKS, which
    // the control plane holds.
    const unknown = await mintLease(fc, { grant, clientPublicKey: privateKey, user: 'renewer', keys: { lease: fc.keys.lease, ca: signingKey('rogue-ca') } });
    const release = fc.holdJwks();
    const asked = once(fc.emitter, 'jwks');
    assert.equal(await renewLease(client, unknown.certificate), false);
    await asked;
    // Still held: the fetch has not failed (the relay gives up on it after 2 s here).
    const jwks = relay.relay.health().jwks as { lastError: string | null };
    assert.equal(jwks.lastError, null, 'the renewal was answered only after the JWKS fetch failed');
    release();

    const fresh = await mintLease(fc, { grant, clientPublicKey: privateKey, user: 'renewer' });
    assert.equal(await renewLease(client, fresh.certificate), true);
    const refused = relay.logger.lines.filter((l) => l.msg === 'lease renewal refused').map((l) => l.fields.reason);
    assert.deepEqual(refused, ['ca_untrusted']);
  });
});

describe('hostile: a renewal flood', { timeout: 120_000 }, () => {
  const t = relayUnderTest(['--max-renewals-per-minute', '5']);

  it('a connection that renews past --max-renewals-per-minute is disconnected; one within it stays', async () => {
    const { fc, relay } = t;
    const grant = { kind: 'open' as const, exposure: 'renewed' };
    const calm = await t.member('calm', { grant });
    const calmLease = await mintLease(fc, { grant, clientPublicKey: calm.privateKey, user: 'calm' });
    for (let i = 0; i < 4; i++) assert.equal(await renewLease(calm.client, calmLease.certificate), true);

    const flood = await t.member('flood', { grant });
    const lease = await mintLease(fc, { grant, clientPublicKey: flood.privateKey, user: 'flood' });
    const from = relay.logger.lines.length;
    const answers = Array.from({ length: 200 }, () => renewLease(flood.client, lease.certificate));
    await within(flood.closed, 30_000, 'the renewing connection was closed');
    const ids = [flood.leaseId, lease.claims.jti];
    const line = await relay.logger.waitFor((l) => l.msg === 'closing connection' && ids.includes(String(l.fields.leaseId)), 10_000, from);
    assert.equal(line.fields.reason, 'renewal_rate');
    const renewed = relay.logger.lines.slice(from).filter((l) => l.msg === 'lease renewed').length;
    assert.ok(renewed <= 5, `${renewed} renewals verified before the disconnect`);
    assert.match(relay.relay.metricsText(), /tunnel_node_lease_renewals_total\{result="rate_limited"\} 1/);
    void Promise.allSettled(answers);

    // The calm one renewed 4 times (under 5) and still can.
    assert.equal(await renewLease(calm.client, calmLease.certificate), true);
  });
});
