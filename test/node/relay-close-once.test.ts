/**
 * A connection the relay closes is closed once: the first reason stands. RelayConnection#end
 * checked only whether the socket had closed, so a second reason that came while the connection
 * was still closing (a peer that ignores the DISCONNECT keeps it open up to the relay's 2 s
 * deadline) logged the close again with the other reason, counted a lease closure that closed
 * nothing, and armed another deadline; and a revocation counted such a connection among those
 * it closed ('revoked lease closed connections'). In-process relay against the fake control plane; each
 * member is an ssh2 client with a certificate that stops reading once it is in, so its
 * connection stays closing until the relay's deadline.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ignoreEverything } from './hostile-clients.js';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';

describe('a connection the relay closes, closes once', { timeout: 60_000 }, () => {
  // Polls only when the test asks (pollRevocations), so each step follows the one before.
  const t = relayUnderTest(['--revocation-poll-interval', '1h', '--revocation-wait', '0s']);

  const closingLines = (leaseId: string, from: number) =>
    t.relay.logger.lines.slice(from).filter((l) => l.msg === 'closing connection' && l.fields.leaseId === leaseId);
  const closed = (leaseId: string, from: number) =>
    t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === leaseId, 10_000, from);
  const leaseClosures = () => parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_lease_closures_total', { reason: 'lease_revoked' });
  const revocationsKnown = () => parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_revocations_known');

  /**
   * Refuses the relay's node credential for one poll (the relay closes every connection,
   * credential_rejected), then accepts it again (the relay admits connections again). Returns how
   * many connections the relay had when it closed them.
   */
  async function refuseCredentialOnce(from: number): Promise<unknown> {
    const restore = t.fc.replaceCredential();
    await t.relay.relay.pollRevocations();
    const line = await t.relay.logger.waitFor((l) => l.level === 'error' && /refuses this relay's node credential/.test(l.msg), 5000, from);
    restore();
    await t.relay.relay.pollRevocations();
    return line.fields.connections;
  }

  it('revoked, then the node credential refused while it still closes: one close, for the revocation', async () => {
    const m = await t.member('revoked-first');
    ignoreEverything(m.client);
    const from = t.relay.logger.lines.length;

    t.fc.revoke(m.leaseId, m.exp);
    await t.relay.relay.pollRevocations();
    await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === m.leaseId, 5000, from);
    // The second reason reaches the connection while it is still there (closing, not closed).
    assert.equal(await refuseCredentialOnce(from), 1);

    await closed(m.leaseId, from);
    assert.deepEqual(
      closingLines(m.leaseId, from).map((l) => l.fields.reason),
      ['lease_revoked'],
    );
  });

  it('the node credential refused, then revoked while it still closes: one close, and no lease closure counted or logged', async () => {
    const m = await t.member('refused-first');
    ignoreEverything(m.client);
    const from = t.relay.logger.lines.length;
    const closuresBefore = leaseClosures();

    await refuseCredentialOnce(from);
    await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === m.leaseId, 5000, from);
    // The next poll learns the revocation (applied when it resolves); the registry still holds the connection.
    const known = revocationsKnown();
    t.fc.revoke(m.leaseId, m.exp);
    await t.relay.relay.pollRevocations();
    assert.equal(revocationsKnown() - known, 1, 'the relay learned the revocation');
    assert.equal(
      t.relay.logger.lines.slice(from).filter((l) => l.msg === 'revoked lease closed connections' && l.fields.leaseId === m.leaseId).length,
      0,
      'a connection already closing is not counted among those the revocation closed',
    );

    await closed(m.leaseId, from);
    assert.deepEqual(
      closingLines(m.leaseId, from).map((l) => l.fields.reason),
      ['credential_rejected'],
    );
    assert.equal(leaseClosures() - closuresBefore, 0, 'a connection already closing is not counted as closed for its lease');
  });
});
