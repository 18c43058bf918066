/**
 * A Y channel open whose connection closes (or begins closing) before X answers is abandoned and
 * counted: the relay confirms Y's channel only once X's side is open, and when X's answer finds
 * Y's connection gone or closing it closes X's channel and counts
 * `tunnel_node_bridged_channels_total{outcome="abandoned"}`. A closed Y's open used to be counted
 * in no outcome (neither opened nor refused); a closing Y's (revoked, its peer not hanging up) was
 * confirmed on a socket the relay had already ended and bridged to X until the close. In-process
 * relay against the fake control plane; X and Y are ssh2 clients with certificates, X holding its
 * answer until Y is gone or closing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { ignoreEverything, openDirect } from './hostile-clients.js';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';

const NAME = 'hostx-abandoned';

describe('a Y channel open abandoned mid-open', { timeout: 60_000 }, () => {
  // Polls only when the test asks (pollRevocations).
  const t = relayUnderTest(['--revocation-poll-interval', '1h', '--revocation-wait', '0s']);
  const channels = (outcome: string) => parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_bridged_channels_total', { outcome });

  /** X, exposing NAME; `asked()` resolves with the accept of the next forwarded open X gets. */
  async function exposer(user: string): Promise<{ asked(): Promise<() => ClientChannel> }> {
    const x = await t.member(user, { grant: { kind: 'expose', exposure: NAME, port: 22 } });
    await new Promise<void>((resolve, reject) => x.client.forwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
    return { asked: () => new Promise((resolve) => x.client.once('tcp connection', (_info, accept) => resolve(accept))) };
  }

  /** X answers now: the relay has no Y channel to confirm, and closes X's; the open counted abandoned, not opened. */
  async function answerAbandoned(accept: () => ClientChannel, before: { abandoned: number; opened: number }, from: number): Promise<void> {
    const xch = accept().resume();
    await new Promise((resolve) => xch.once('close', resolve));
    assert.equal(channels('abandoned') - before.abandoned, 1);
    assert.equal(channels('opened') - before.opened, 0);
    assert.equal(t.relay.logger.lines.slice(from).filter((l) => l.msg === 'channel bridged').length, 0);
  }

  it("is counted as abandoned when Y's connection closed before X answered", async () => {
    const x = await exposer('x-closed');
    const asked = x.asked();
    const before = { abandoned: channels('abandoned'), opened: channels('opened') };
    const y = await t.member('y-closed', { grant: { kind: 'open', exposure: NAME } });
    openDirect(y.client, NAME, 22).catch(() => {}); // never answered: Y is gone first
    const accept = await asked;
    const from = t.relay.logger.lines.length;
    y.client.destroy();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId, 10_000, from);
    await answerAbandoned(accept, before, from);
  });

  it("is abandoned, not bridged, when Y's connection was closing (revoked, its peer not hanging up) when X answered", async () => {
    const x = await exposer('x-closing');
    const asked = x.asked();
    const before = { abandoned: channels('abandoned'), opened: channels('opened') };
    const y = await t.member('y-closing', { grant: { kind: 'open', exposure: NAME } });
    openDirect(y.client, NAME, 22).catch(() => {});
    const accept = await asked;
    ignoreEverything(y.client);
    const from = t.relay.logger.lines.length;
    t.fc.revoke(y.leaseId, y.exp);
    await t.relay.relay.pollRevocations();
    await t.relay.logger.waitFor((l) => l.msg === 'closing connection' && l.fields.leaseId === y.leaseId, 5000, from);
    await answerAbandoned(accept, before, from);
    // X answered while Y's connection was still there, closing (the relay's 2 s deadline).
    assert.equal(t.relay.logger.lines.slice(from).filter((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId).length, 0);
  });
});
