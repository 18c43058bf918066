/**
 * A relay stopped while a bridge to an egress target is left delivering what a departed Y sent
 * before its CLOSE (the target reads nothing): no open connection holds that bridge, so ending
 * the open connections did not end it, and Y's conn_close came after the relay's last event
 * flush (lost). Y's conn_close now reaches control before stop() resolves.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pausedTarget, prefilledDial, sendAndClose } from './left-bridges.js';
import { relayUnderTest } from './relay-under-test.js';

/** More than loopback's socket buffers take: the relay's writes to the target queue behind it, unread. */
const PREFILL = Buffer.alloc(64 * 1024 * 1024, 0x50);
const DATA = Buffer.alloc(4096, 0x58);


describe('a relay stopped with a bridge to an egress target left by a Y that hung up', { timeout: 60_000 }, () => {
  const t = relayUnderTest([], { egressDial: prefilledDial(PREFILL) });

  it("ends it and reports Y's conn_close before it stops", async () => {
    const target = await pausedTarget();
    const { port } = target;
    try {
      const y = await t.member('yegress-left', { grant: { kind: 'egress', targets: [{ host: '127.0.0.1', port }] } });
      await sendAndClose(y.client, '127.0.0.1', port, DATA);
      const from = t.relay.logger.lines.length;
      y.client.end();
      await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId && l.fields.bridgesLeft === 1, 10_000, from);
      await t.relay.stop();
      // stop() resolves after its last event flush: the event is there now, or was lost.
      assert.ok(
        t.fc.events.some((e) => e.type === 'conn_close' && e.lease_id === y.leaseId),
        "Y's conn_close, sent by the relay's last flush",
      );
    } finally {
      target.close();
    }
  });
});
