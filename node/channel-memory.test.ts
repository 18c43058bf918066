/**
 * The relay's channel memory (node/channel-memory.ts): what all channels, and each member's, may
 * hold in bytes. Accounting alone, then on a real ssh2 server and client over loopback, with the
 * relay's own open (acceptWithWindow) and top-up (holdToWindow) code: a server that never reads,
 * checked after every CHANNEL_DATA it receives.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientChannel, ServerChannel } from 'ssh2';
import { CHANNEL_FLOOR, ChannelMemory, type ChannelAllowance } from './channel-memory.js';
import { holdToWindow } from './forwarding/standard-window.js';
import { acceptWithWindow, channelWindow, STANDARD_WINDOW } from './ssh2-internals.js';
import { ssh2Pair } from './testing/ssh2-pair.js';

const MiB = 1024 * 1024;
const ABOVE = STANDARD_WINDOW - CHANNEL_FLOOR;

describe('channel memory: accounting', () => {
  it('gives each channel the standard window while the budget and its member share have room, then the floor', () => {
    const m = new ChannelMemory({ budgetBytes: 3 * ABOVE, memberShareBytes: 2 * ABOVE });
    const a1 = m.open('a');
    const a2 = m.open('a');
    const a3 = m.open('a');
    assert.deepEqual([a1.size(), a2.size(), a3.size()], [STANDARD_WINDOW, STANDARD_WINDOW, CHANNEL_FLOOR], "a's share is two channels' worth");
    const b1 = m.open('b');
    const b2 = m.open('b');
    assert.deepEqual([b1.size(), b2.size()], [STANDARD_WINDOW, CHANNEL_FLOOR], 'the budget is three');
    assert.equal(m.status().taken, 3 * ABOVE);
    assert.equal(m.status().short(), 2);
    // A closed channel's bytes go to the next size() that asks: a3 (a's share has room again).
    a1.release();
    a1.release(); // once only
    assert.equal(m.status().taken, 2 * ABOVE);
    assert.equal(b2.size(), STANDARD_WINDOW, 'b asked first');
    assert.equal(a3.size(), CHANNEL_FLOOR, 'the budget is spent again');
    b1.release();
    assert.equal(a3.size(), STANDARD_WINDOW);
    assert.equal(m.status().peak, 3 * ABOVE);
    for (const x of [a2, a3, b2]) x.release();
    assert.equal(m.status().taken, 0);
    assert.equal(m.status().channels, 0);
  });

  it('never shrinks a channel it gave a window to, and gives a partial share', () => {
    const m = new ChannelMemory({ budgetBytes: ABOVE + 100_000 });
    const a = m.open('a');
    const b = m.open('b');
    assert.equal(a.size(), STANDARD_WINDOW);
    assert.equal(b.size(), CHANNEL_FLOOR + 100_000);
    assert.equal(a.size(), STANDARD_WINDOW);
    const z = new ChannelMemory({ budgetBytes: 0 });
    assert.equal(z.open('a').size(), CHANNEL_FLOOR, 'a budget of 0: every channel holds the floor');
  });

  it('refuses a budget that is not a whole number of bytes', () => {
    assert.throws(() => new ChannelMemory({ budgetBytes: -1 }), RangeError);
    assert.throws(() => new ChannelMemory({ budgetBytes: 1.5 }), RangeError);
    assert.throws(() => new ChannelMemory({ budgetBytes: 1, memberShareBytes: NaN }), RangeError);
  });
});

describe('channel memory on a real ssh2 server that never reads', () => {
  it("opens channels with what the budget has, and all of them together never hold more than the budget plus each one's floor", async () => {
    const CHANNELS = 6;
    const memory = new ChannelMemory({ budgetBytes: 4 * MiB });
    const server: { ch: ServerChannel; allowance: ChannelAllowance }[] = [];
    const violations: string[] = [];
    let peak = 0;
    let checks = 0;
    let full: () => void = () => {};
    const allFull = new Promise<void>((r) => (full = r));
    const check = () => {
      checks++;
      let held = 0;
      for (const { ch, allowance } of server) {
        const w = channelWindow(ch);
        const committed = w.window() + w.readable();
        held += committed;
        if (committed > allowance.size()) violations.push(`a channel holds ${committed}, allowed ${allowance.size()}`);
      }
      peak = Math.max(peak, held);
      if (held > memory.budget + CHANNELS * CHANNEL_FLOOR) violations.push(`all hold ${held}`);
      if (server.length === CHANNELS && server.every(({ ch }) => channelWindow(ch).window() === 0)) full();
    };
    const pair = await ssh2Pair((conn, accept) => {
      const allowance = memory.open('member');
      const ch = acceptWithWindow(conn, accept, allowance.size())!;
      ch.once('close', () => allowance.release());
      holdToWindow(ch, allowance);
      ch.pause();
      // Outermost: runs after ssh2 took the packet off the window and the top-up ran.
      const push = ch.push.bind(ch);
      ch.push = (chunk: unknown, enc?: BufferEncoding) => {
        const ok = push(chunk, enc);
        check();
        return ok;
      };
      server.push({ ch, allowance });
    });
    try {
      const client: ClientChannel[] = [];
      for (let i = 0; i < CHANNELS; i++) client.push(await pair.open());
      const offered = client.map((ch) => (ch as unknown as { outgoing: { window: number } }).outgoing.window);
      const rest = 4 * MiB - 2 * ABOVE;
      assert.deepEqual(offered, [STANDARD_WINDOW, STANDARD_WINDOW, CHANNEL_FLOOR + rest, CHANNEL_FLOOR, CHANNEL_FLOOR, CHANNEL_FLOOR]);
      const chunk = Buffer.alloc(32 * 1024, 0x61);
      for (const ch of client) for (let i = 0; i < 128; i++) ch.write(chunk); // 4 MiB each: more than any window
      await allFull;
      assert.deepEqual(violations, []);
      assert.ok(checks >= (2 * STANDARD_WINDOW) / chunk.length, `checked after every packet (${checks})`);
      const expected = 2 * STANDARD_WINDOW + CHANNEL_FLOOR + rest + 3 * CHANNEL_FLOOR;
      assert.equal(peak, expected, 'every channel filled exactly what it was allowed');
      // A closed channel gives its bytes back: the next channel opens with the standard window.
      // (A stream emits 'close' once its unread data was read: the relay's bridge reads or destroys it.)
      const closed = new Promise((r) => server[0]!.ch.once('close', r));
      server[0]!.ch.resume();
      client[0]!.close();
      await closed;
      const next = await pair.open();
      assert.equal((next as unknown as { outgoing: { window: number } }).outgoing.window, STANDARD_WINDOW);
    } finally {
      await pair.close();
    }
  });
});
