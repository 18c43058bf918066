/**
 * A relay stopped (SIGTERM's drain) while a bridge to an egress target is still delivering what a
 * departed Y sent before its CLOSE, to a target that reads slowly: the drain waits for it (within
 * --drain-timeout), as it waits for live channels, so the target gets every byte. Before, the
 * stop saw no live channel and cut the bridge at once, and what the relay still held was lost.
 * (A target that never reads is cut at the deadline: relay-left-egress-stop.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pausedTarget, prefilledDial, sendAndClose } from './left-bridges.js';
import { relayUnderTest } from './relay-under-test.js';

/** More than loopback's socket buffers take: the relay's writes to the target queue behind it until the target reads. */
const PREFILL = Buffer.alloc(16 * 1024 * 1024, 0x50);
const DATA = Buffer.alloc(256 * 1024, 0x58);


describe('a relay draining with a bridge to an egress target left by a Y that hung up', { timeout: 60_000 }, () => {
  const t = relayUnderTest(['--drain-timeout', '30s'], { egressDial: prefilledDial(PREFILL) });

  it('waits for the target to take what Y sent, then stops', async () => {
    let received = 0;
    let tail = Buffer.alloc(0);
    let ended!: () => void;
    const targetEnded = new Promise<void>((resolve) => (ended = resolve));
    const target = await pausedTarget((s) => {
      s.on('data', (d: Buffer) => {
        received += d.length;
        tail = Buffer.concat([tail, d]).subarray(-DATA.length);
      });
      s.on('end', () => ended());
    });
    const { port, taken } = target;
    try {
      const y = await t.member('yegress-drain', { grant: { kind: 'egress', targets: [{ host: '127.0.0.1', port }] } });
      await sendAndClose(y.client, '127.0.0.1', port, DATA);
      const from = t.relay.logger.lines.length;
      y.client.end();
      await t.relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.leaseId === y.leaseId && l.fields.bridgesLeft === 1, 10_000, from);
      const stopped = t.relay.stop();
      await t.relay.logger.waitFor((l) => l.msg === 'relay draining', 10_000, from);
      assert.equal(taken.length, 1, 'one connection to the target');
      taken[0]!.resume();
      await Promise.all([stopped, targetEnded]);
      assert.equal(received, PREFILL.length + DATA.length, 'every byte Y sent reached the target');
      assert.ok(tail.equals(DATA), 'the last bytes are what Y sent');
      const line = t.relay.logger.lines.slice(from).find((l) => l.msg === 'relay stopped');
      assert.equal(line?.fields.closedConnectionsCutAtDeadline, 0);
    } finally {
      target.close();
    }
  });
});
