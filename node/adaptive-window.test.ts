/**
 * Adaptive windows on a real ssh2 server and client over loopback (no relay): many channels at
 * once push data to a server whose reader first keeps up (windows grow) and then stops (a slow
 * reader; data piles up in what was granted). After every CHANNEL_DATA the server received, the
 * memory all channels hold above ssh2's standard 4 MiB (2 MiB window + 2 MiB readable buffer)
 * must be within the reservations, and the reservations within the budget.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import ssh2, { type ClientChannel, type Connection, type ServerChannel } from 'ssh2';
import { formatOpenSshPrivateKey } from '../protocol/ssh-key.js';
import { STANDARD_COMMITTED, WindowBudget } from './adaptive-window.js';
import { channelWindow, STANDARD_WINDOW } from './ssh2-internals.js';

const MiB = 1024 * 1024;

interface Pair {
  /** Server-side channels, in the order the client opened them. */
  accepted: Promise<ServerChannel>[];
  client: ssh2.Client;
  open(): Promise<ClientChannel>;
  close(): Promise<void>;
}

/** A real ssh2 server and client on loopback; each direct-tcpip the client opens is accepted and handed to `onChannel`. */
async function sshPair(onChannel: (ch: ServerChannel) => void): Promise<Pair> {
  const hostKey = formatOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey);
  const conns: Connection[] = [];
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
    conns.push(conn);
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('tcpip', (accept) => onChannel(accept()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new ssh2.Client();
  client.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, username: 'u', hostVerifier: () => true });
  });
  return {
    accepted: [],
    client,
    open: () =>
      new Promise((resolve, reject) => client.forwardOut('127.0.0.1', 1, '127.0.0.1', 2, (err, ch) => (err ? reject(err) : resolve(ch)))),
    async close() {
      client.end();
      for (const c of conns) c.end();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Writes `bytes` to `ch` with backpressure, then ends it. */
function send(ch: Duplex, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  return new Promise((resolve) => {
    let left = bytes;
    const more = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!ch.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void ch.once('drain', more);
      }
      ch.end();
      resolve();
    };
    more();
  });
}

describe('adaptive windows (real ssh2 client and server)', () => {
  const CHANNELS = 12;
  const PER_CHANNEL = 24 * MiB;
  // minGain 1: every doubling is kept, so this tests the bound, not the probing (tested below).
  const budget = new WindowBudget({ budgetBytes: 12 * MiB, channelMaxBytes: 8 * MiB, sweepMs: 0, minGain: 1 });
  const server: ServerChannel[] = [];
  const received: number[] = [];
  let violations: string[] = [];
  let peakCommittedAbove = 0;
  let checks = 0;
  let pair: Pair;
  /** Set when the server's reader stops (the slow phase). */
  let stopped = false;
  let stalledResolve: () => void = () => {};

  /** The bound, checked after every packet the server receives. */
  const check = () => {
    checks++;
    const s = budget.status();
    const above = s.committedAbove();
    if (above > peakCommittedAbove) peakCommittedAbove = above;
    if (s.reserved > s.budget) violations.push(`reserved ${s.reserved} > budget ${s.budget}`);
    if (above > s.reserved) violations.push(`committed above standard ${above} > reserved ${s.reserved}`);
    for (const ch of server) {
      const w = channelWindow(ch);
      const committed = w.window() + w.readable();
      if (committed > STANDARD_COMMITTED + (s.channelMax - STANDARD_WINDOW)) violations.push(`one channel holds ${committed}`);
    }
  };

  before(async () => {
    pair = await sshPair((ch) => {
      const i = server.length;
      server.push(ch);
      received.push(0);
      assert.equal(budget.adopt(ch), true);
      // Outermost: runs after ssh2 reduced the window and the budget reacted.
      const push = ch.push.bind(ch);
      ch.push = (chunk: unknown, enc?: BufferEncoding) => {
        const ok = push(chunk, enc);
        check();
        return ok;
      };
      ch.on('data', (d: Buffer) => {
        received[i]! += d.length;
        if (!stopped && received.reduce((a, b) => a + b, 0) >= (CHANNELS * PER_CHANNEL) / 3) {
          // The reader stops: every channel pauses, what was granted piles up.
          stopped = true;
          for (const c of server) c.pause();
          stalledResolve();
        }
      });
    });
  });
  after(async () => pair.close());

  it('grows windows while the reader keeps up, and never holds more than the budget when it stops', async () => {
    const stalled = new Promise<void>((r) => (stalledResolve = r));
    const clientChannels = await Promise.all(Array.from({ length: CHANNELS }, () => pair.open()));
    const sends = clientChannels.map((ch) => send(ch, PER_CHANNEL));
    await stalled;
    const grownWhileReading = budget.status().peakReserved;
    // Let the senders run into the closed windows: wait until no channel has window left to
    // fill (every grant was used or the channel is done), then check once more.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        const busy = server.some((ch) => channelWindow(ch).window() > 0 && received[server.indexOf(ch)]! + ch.readableLength < PER_CHANNEL);
        if (!busy) {
          clearInterval(poll);
          resolve();
        }
      }, 20);
    });
    check();
    const heldWhileStopped = peakCommittedAbove;
    // The reader comes back: everything arrives, windows are granted again within the budget.
    stopped = true;
    for (const c of server) c.resume();
    await Promise.all(sends);
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (received.every((n) => n === PER_CHANNEL)) {
          clearInterval(poll);
          resolve();
        }
      }, 20);
    });
    assert.deepEqual(violations, [], 'the bound held after every packet');
    assert.ok(checks > (CHANNELS * PER_CHANNEL) / (32 * 1024) / 2, `checked after every packet (${checks})`);
    assert.ok(grownWhileReading > 0, 'windows grew while the reader kept up (the test can fail)');
    assert.equal(budget.status().peakReserved, budget.budget, 'the budget, not the channel cap, was the limit (12 channels x 6 MiB wanted)');
    assert.ok(heldWhileStopped > 0, `the stopped reader held data above the standard window (${heldWhileStopped})`);
    assert.ok(heldWhileStopped <= budget.budget, `held ${heldWhileStopped} above the standard, budget ${budget.budget}`);
    violations = [];
  });

  it('gives every reservation back when the channels close', async () => {
    for (const c of server) c.close();
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (budget.status().channels === 0) {
          clearInterval(poll);
          resolve();
        }
      }, 10);
    });
    assert.equal(budget.status().reserved, 0);
  });
});

/** A stand-in for an ssh2 channel's window internals, driven by hand: `deliver(n)` is one CHANNEL_DATA. */
function fakeChannel() {
  const ch = {
    incoming: { window: STANDARD_WINDOW },
    outgoing: { id: 7, state: 'open' },
    granted: 0,
    _client: { _protocol: { channelWindowAdjust: (_id: number, n: number) => (ch.granted += n) } },
    push: (_chunk: unknown) => true,
    _read: (_n: number) => {},
    readableLength: 0,
    once: () => ch,
  };
  return {
    duplex: ch as unknown as Duplex,
    window: () => ch.incoming.window,
    /** What ssh2's CHANNEL_DATA handler does: reduce the window, push, then its own top-up to 2 MiB at 1 MiB. */
    deliver(n: number) {
      ch.incoming.window -= n;
      if ((ch.push as (c: unknown) => boolean)(Buffer.alloc(n)) && ch.incoming.window <= STANDARD_WINDOW / 2) {
        ch.granted += STANDARD_WINDOW - ch.incoming.window;
        ch.incoming.window = STANDARD_WINDOW;
      }
    },
  };
}

describe('adaptive window probing (fake channel, fake clock)', () => {
  const PACKET = 32 * 1024;
  /** Delivers `bytes` in packets; `msPerByte(window)` is how fast the path delivers at the current window. */
  function run(budget: WindowBudget, clock: { t: number }, bytes: number, msPerByte: (target: number) => number) {
    const ch = fakeChannel();
    budget.adopt(ch.duplex);
    let maxTarget = 0;
    for (let sent = 0; sent < bytes; sent += PACKET) {
      const target = STANDARD_WINDOW + budget.status().reserved;
      maxTarget = Math.max(maxTarget, target);
      clock.t += PACKET * msPerByte(target);
      ch.deliver(PACKET);
      assert.ok(ch.window() >= 0, 'never more delivered than granted');
    }
    return { maxTarget, reserved: budget.status().reserved };
  }

  it('keeps doubling while the window is the limit (rate grows with it: a long path), up to the channel cap', () => {
    const clock = { t: 0 };
    const budget = new WindowBudget({ budgetBytes: 64 * MiB, channelMaxBytes: 16 * MiB, sweepMs: 0, now: () => clock.t });
    // Window-limited: one window per 50 ms round trip.
    const r = run(budget, clock, 128 * MiB, (target) => 50 / target);
    assert.equal(r.maxTarget, 16 * MiB);
    assert.equal(r.reserved, 14 * MiB, 'settled at the cap');
  });

  it('goes back to the standard window when a doubling does not raise the rate (a CPU-bound or short path)', () => {
    const clock = { t: 0 };
    const budget = new WindowBudget({ budgetBytes: 64 * MiB, channelMaxBytes: 16 * MiB, sweepMs: 0, now: () => clock.t });
    // The same 100 MB/s whatever the window.
    const r = run(budget, clock, 128 * MiB, () => 1 / 100_000);
    assert.equal(r.maxTarget, 4 * MiB, 'tried one doubling');
    assert.equal(r.reserved, 0, 'and gave it back');
  });

  it('tries again later: a channel that settled while the machine was busy grows once the window becomes the limit', () => {
    const clock = { t: 0 };
    const budget = new WindowBudget({ budgetBytes: 64 * MiB, channelMaxBytes: 16 * MiB, sweepMs: 0, now: () => clock.t });
    const ch = fakeChannel();
    budget.adopt(ch.duplex);
    let busyMax = 0;
    for (let sent = 0; sent < 256 * MiB; sent += PACKET) {
      const target = STANDARD_WINDOW + budget.status().reserved;
      // First 64 MiB: CPU-bound at 20 MB/s whatever the window; then a 50 ms window-limited path.
      const msPerByte = sent < 64 * MiB ? 1 / 20_000 : 50 / target;
      if (sent < 64 * MiB) busyMax = Math.max(busyMax, target);
      clock.t += PACKET * msPerByte;
      ch.deliver(PACKET);
    }
    assert.equal(busyMax, 4 * MiB, 'while busy it only ever tried one doubling at a time');
    assert.equal(budget.status().reserved, 14 * MiB, 'then it grew to the cap');
  });

  it('stops where the rate stops growing (the path saturates between)', () => {
    const clock = { t: 0 };
    const budget = new WindowBudget({ budgetBytes: 64 * MiB, channelMaxBytes: 32 * MiB, sweepMs: 0, now: () => clock.t });
    // 50 ms RTT, but at most 150 MB/s: the window stops mattering at about 7.5 MB.
    const r = run(budget, clock, 256 * MiB, (target) => Math.max(50 / target, 1 / 150_000));
    assert.equal(r.reserved, 6 * MiB, 'kept 8 MiB (the first window at full speed), gave back the 16 MiB probe');
    assert.equal(r.maxTarget, 16 * MiB);
  });
});

describe('WindowBudget', () => {
  it('is off with a zero budget or a cap at the standard window (the channel keeps ssh2 behaviour)', () => {
    const fake = {} as Duplex;
    assert.equal(new WindowBudget({ budgetBytes: 0, channelMaxBytes: 32 * MiB, sweepMs: 0 }).adopt(fake), false);
    assert.equal(new WindowBudget({ budgetBytes: 64 * MiB, channelMaxBytes: STANDARD_WINDOW, sweepMs: 0 }).adopt(fake), false);
  });

  it('never hands out more than its budget', () => {
    const b = new WindowBudget({ budgetBytes: 10, channelMaxBytes: 4 * MiB, sweepMs: 0 });
    assert.equal(b.take(6), 6);
    assert.equal(b.take(6), 4);
    assert.equal(b.take(1), 0);
    b.give(5);
    assert.equal(b.take(8), 5);
    assert.equal(b.status().peakReserved, 10);
  });

  it('says which ssh2 internal is missing when ssh2 changed', () => {
    const b = new WindowBudget({ budgetBytes: 10 * MiB, channelMaxBytes: 4 * MiB, sweepMs: 0 });
    assert.throws(() => b.adopt({ incoming: {} } as unknown as Duplex), /ssh2 internals changed/);
  });
});
