/**
 * A relay stopped while a bridge is left delivering what a peer sent before its CLOSE (that peer
 * hung up, the other side grants no window): the stop ends it, and the departed connection's
 * conn_close still reaches control before the relay's last event flush.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { exposeStalled, sendAndClose } from './left-bridges.js';
import { relayUnderTest } from './relay-under-test.js';

const DATA = Buffer.alloc(4096, 0x58);

describe('a relay stopped with a bridge left by a peer that hung up', { timeout: 60_000 }, () => {
  const t = relayUnderTest();

  it("ends it and reports the departed connection's conn_close before it stops", async () => {
    const xs: ClientChannel[] = [];
    const x = await t.member('owner', { grant: { kind: 'expose', exposure: 'left-stop', port: 22 } });
    await exposeStalled(x.client, 'left-stop', (ch) => xs.push(ch));
    const y = await t.member('yleaves', { grant: { kind: 'open', exposure: 'left-stop' } });
    await sendAndClose(y.client, 'left-stop', 22, DATA);
    const from = t.relay.logger.lines.length;
    y.client.end();
    await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId && l.fields.bridgesLeft === 1, 10_000, from);
    assert.equal(xs.length, 1);
    await t.relay.stop();
    // stop() resolves after its last event flush: the event is there now, or was lost.
    const close = t.fc.events.find((e) => e.type === 'conn_close' && e.lease_id === y.leaseId);
    assert.ok(close, "Y's conn_close, sent by the relay's last flush");
    assert.equal(close.bytes_out, 0);
    assert.ok(t.fc.events.some((e) => e.type === 'conn_close' && e.lease_id === x.leaseId), "X's conn_close");
  });
});
