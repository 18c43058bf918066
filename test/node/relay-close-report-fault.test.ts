/**
 * A throw while a closed connection's close is reported is a fault of that connection, and the
 * report still ends: its conn_close goes out (counting what a bridge it left carried afterwards)
 * and what the lease registry held for its left bridges is given back. The report waited for
 * three parts (Y's bridges, X's, itself), and a throw before the last left it waiting for good:
 * no conn_close, and the registry's cut kept. Injected with --test-fault close-report on the
 * connections of user `fault-close-report` (node/fault-guard.ts), before X's bridges are asked;
 * in-process relay, fake control plane, ssh2 peers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { exposeStalled, protocolOf, sendAndClose } from './left-bridges.js';
import { connCloseOf, relayUnderTest } from './relay-under-test.js';
import { within } from './ssh-tools.js';

const DATA = Buffer.alloc(4096, 0x58);

describe("a fault while a connection's close is reported", { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--test-fault', 'close-report']);

  it('is counted, and the conn_close still goes out', async () => {
    const y = await t.member('fault-close-report', { grant: { kind: 'open', exposure: 'cr' } });
    const from = t.relay.logger.lines.length;
    y.client.end();
    const fault = await t.relay.logger.waitFor((l) => l.msg === 'connection handler failed; closing the connection', 10_000, from);
    assert.equal(fault.fields.where, 'close');
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId, 10_000, from);
    const closed = await within(connCloseOf(t.fc, y.leaseId), 10_000, "Y's conn_close reported");
    assert.deepEqual([closed.bytes_in, closed.bytes_out], [0, 0]);
  });

  it('with a bridge left: conn_close goes out once it closed, counting what it carried', async () => {
    // X confirms Y's channel with a window of 0: what Y sends waits in the relay.
    const x = await t.member('owner', { grant: { kind: 'expose', exposure: 'cr-left', port: 22 } });
    const xs: ClientChannel[] = [];
    await exposeStalled(x.client, 'cr-left', (ch) => xs.push(ch));
    const y = await t.member('fault-close-report', { grant: { kind: 'open', exposure: 'cr-left' } });
    // Once sent, the relay has read Y's data, EOF and CLOSE (a refused request's answer came back).
    await sendAndClose(y.client, 'cr-left', 22, DATA);
    const from = t.relay.logger.lines.length;
    y.client.end();
    await t.relay.logger.waitFor((l) => l.msg === 'connection handler failed; closing the connection' && l.fields.where === 'close', 10_000, from);
    const closedLine = await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId, 10_000, from);
    assert.equal(closedLine.fields.bridgesLeft, 1);
    const xch = xs[0]!;
    let got = 0;
    xch.on('data', (d: Buffer) => (got += d.length));
    const xClosed = new Promise<void>((resolve) => xch.once('close', () => resolve()));
    protocolOf(x.client).channelWindowAdjust((xch as unknown as { outgoing: { id: number } }).outgoing.id, 1 << 20);
    await within(xClosed, 10_000, "X's channel closed");
    assert.equal(got, DATA.length);
    const closed = await within(connCloseOf(t.fc, y.leaseId), 10_000, "Y's conn_close reported");
    assert.deepEqual([closed.bytes_in, closed.bytes_out], [DATA.length, 0], 'counted once the left bridge closed');
  });
});
