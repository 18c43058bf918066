/**
 * A connection's close gives back everything it holds even when one of its steps throws. end()
 * ran its releases in a row (bridges, exposures, egress rules), so a throw in the first left the
 * rest until the socket closed (up to 2 s for a peer that ignores the DISCONNECT); and the
 * socket's close ran its own releases in a row under one guard, so the same throw there skipped
 * the rest for good: the exposure stayed bound, the member's connection was never given back
 * (--max-connections-per-member), and the close was never logged. The fault is injected with
 * --test-fault close-bridges on the connections of user `fault-close-bridges` (node/fault-guard.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ignoreEverything } from './hostile-clients.js';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';

describe("a connection's close releases everything when a step throws", { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--test-fault', 'close-bridges', '--max-connections-per-member', '1', '--revocation-poll-interval', '1h', '--revocation-wait', '0s']);

  it('unbinds its exposure at end(), and gives back the member and logs the close at the socket close', async () => {
    const grant = { kind: 'expose' as const, exposure: 'sink-close', port: 22 };
    const x = await t.member('fault-close-bridges', { grant });
    await new Promise<void>((resolve, reject) => x.client.forwardIn('sink-close', 22, (err) => (err ? reject(err) : resolve())));
    assert.equal(t.relay.relay.health().exposures_online, 1);
    // X ignores the DISCONNECT: its socket closes only at the relay's 2 s deadline.
    ignoreEverything(x.client);
    const from = t.relay.logger.lines.length;
    t.fc.revoke(x.leaseId, x.exp);
    await t.relay.relay.pollRevocations();
    await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === x.leaseId, 5000, from);
    assert.equal(t.relay.relay.health().exposures_online, 0, 'the exposure is unbound at end(), not at the close');

    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === x.leaseId, 10_000, from);
    const faults = parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_handler_faults_total', { where: 'close' });
    assert.equal(faults, 2, 'the injected throw, at end() and at the close, counted as faults');
    // The member's one connection was given back: the same member connects again.
    const again = await t.member('fault-close-bridges', { grant });
    await new Promise<void>((resolve, reject) => again.client.forwardIn('sink-close', 22, (err) => (err ? reject(err) : resolve())));
    assert.equal(t.relay.relay.health().exposures_online, 1);
  });
});
