import assert from 'node:assert/strict';
import { Duplex, PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import type { SendGate } from '../send-budget.js';
import { bridge, type BridgeEnd, type BridgeStats } from './bridge.js';

/** A fake channel: `remote` is what the peer sees; eof() ends remote's readable side. */
function fakeChannel() {
  const toLocal = new PassThrough();
  const toRemote = new PassThrough();
  let eofSent = false;
  let closed = false;
  const local = Duplex.from({ readable: toLocal, writable: toRemote });
  const end: BridgeEnd = {
    stream: local,
    shutdownWrite(done) {
      local.write(Buffer.alloc(0), () => {
        eofSent = true;
        toRemote.end();
        done();
      });
    },
    close() {
      closed = true;
    },
  };
  return { end, peerWrite: (s: string) => toLocal.write(s), peerEof: () => toLocal.end(), peerRead: toRemote, state: () => ({ eofSent, closed }) };
}

function collect(s: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('end', () => resolve(out));
  });
}

describe('bridge', () => {
  it('delivers a reply sent after the other side EOF, then closes both', async () => {
    const y = fakeChannel();
    const x = fakeChannel();
    const closed = new Promise<BridgeStats>((resolve) => bridge(y.end, x.end, resolve));
    const atX = collect(x.peerRead);
    const atY = collect(y.peerRead);
    y.peerWrite('request');
    y.peerEof();
    assert.equal(await atX, 'request', 'X saw the request and EOF');
    assert.equal(x.state().closed, false, 'X still open after Y EOF');
    x.peerWrite('reply after eof');
    x.peerEof();
    assert.equal(await atY, 'reply after eof');
    const stats = await closed;
    assert.deepEqual(stats, { aToB: 7, bToA: 15, end: 'eof' });
    assert.equal(y.state().closed && x.state().closed, true);
  });

  it('tears both sides down when one side errors', async () => {
    const y = fakeChannel();
    const x = fakeChannel();
    const closed = new Promise<BridgeStats>((resolve) => bridge(y.end, x.end, resolve));
    y.end.stream.destroy(new Error('boom'));
    assert.equal((await closed).end, 'error');
    assert.equal(x.state().closed, true);
  });

  it('stops reading the source while the destination peer is over its send bound, and resumes when it is under', async () => {
    const y = fakeChannel();
    const x = fakeChannel();
    // X's peer is over its bound after the first chunk, until `open()`.
    let over = false;
    let waiter: (() => void) | undefined;
    const gate: SendGate = {
      update: () => over,
      whenOpen: (cb) => (over ? (waiter = cb) : cb()),
    };
    x.end.gate = gate;
    bridge(y.end, x.end, () => {});
    const atX: string[] = [];
    x.peerRead.on('data', (d: Buffer) => atX.push(d.toString()));
    over = true;
    y.peerWrite('first');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(atX, ['first'], 'the chunk that crossed the bound is delivered');
    assert.equal(y.end.stream.isPaused(), true, 'the source is paused while X is over its bound');
    y.peerWrite('second');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(atX, ['first'], 'nothing more is fed to X while it is over its bound');
    over = false;
    waiter?.();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(atX, ['first', 'second']);
    assert.equal(y.end.stream.isPaused(), false);
  });
});
