/**
 * A Y channel open whose connection closes before X answers is counted: the relay confirms Y's
 * channel only once X's side is open, and when X's answer finds Y's connection gone it closes X's
 * channel and counts `tunnel_node_bridged_channels_total{outcome="abandoned"}`. It used to count
 * it in no outcome (neither opened nor refused). In-process relay against the fake control plane;
 * X and Y are ssh2 clients with certificates, X holding its answer until Y is gone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { openDirect } from './hostile-clients.js';
import { parsePrometheusText } from './prom-text.js';
import { relayUnderTest } from './relay-under-test.js';

const NAME = 'hostx-abandoned';

describe('a Y channel open abandoned mid-open', { timeout: 60_000 }, () => {
  const t = relayUnderTest();
  const channels = (outcome: string) => parsePrometheusText(t.relay.relay.metricsText()).value('tunnel_node_bridged_channels_total', { outcome });

  it("is counted as abandoned when Y's connection closed before X answered", async () => {
    const x = await t.member('x-abandoned', { grant: { kind: 'expose', exposure: NAME, port: 22 } });
    const asked = new Promise<() => ClientChannel>((resolve) => x.client.once('tcp connection', (_info, accept) => resolve(accept)));
    await new Promise<void>((resolve, reject) => x.client.forwardIn(NAME, 22, (err) => (err ? reject(err) : resolve())));
    const before = { abandoned: channels('abandoned'), opened: channels('opened') };

    const y = await t.member('y-abandoned', { grant: { kind: 'open', exposure: NAME } });
    openDirect(y.client, NAME, 22).catch(() => {}); // never answered: Y is gone first
    const accept = await asked;
    const from = t.relay.logger.lines.length;
    y.client.destroy();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId, 10_000, from);

    // X answers now: the relay has no Y channel to confirm, and closes X's.
    const xch = accept().resume();
    await new Promise((resolve) => xch.once('close', resolve));
    assert.equal(channels('abandoned') - before.abandoned, 1);
    assert.equal(channels('opened') - before.opened, 0);
  });
});
