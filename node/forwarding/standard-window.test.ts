/**
 * A channel the relay has closed grants no more window (real ssh2 server and client on loopback).
 * The relay drains a channel it closed (closeChannel: what comes is dropped) until the peer
 * answers its CLOSE, and its window hook went on granting for every byte dropped (up to the
 * channel's allowance, 64 KiB once its memory went back): a peer that never answers kept sending,
 * and the relay kept reading, granting and dropping (CPU only). Now a closing channel grants
 * nothing: the peer may send what it was granted before, and then nothing more.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { ClientChannel, ServerChannel } from 'ssh2';
import { ssh2Pair, type Ssh2Pair } from '../testing/ssh2-pair.js';
import { closeChannel, type SshChannelLike } from './bridge.js';
import { holdToWindow } from './standard-window.js';

const MiB = 1024 * 1024;

interface ClientProtocol {
  _handlers: {
    CHANNEL_CLOSE: (...a: unknown[]) => void;
    CHANNEL_WINDOW_ADJUST: (p: unknown, recipient: number, amount: number) => void;
  };
}

/** Writes `bytes` to `ch` as its window allows (never ends it). */
function send(ch: ClientChannel, bytes: number): void {
  const chunk = Buffer.alloc(32 * 1024, 0x61);
  let left = bytes;
  const more = () => {
    while (left > 0) {
      left -= chunk.length;
      if (!ch.write(chunk)) return void ch.once('drain', more);
    }
  };
  more();
}

describe('holdToWindow: a channel the relay closed', () => {
  let pair: Ssh2Pair | undefined;
  after(() => pair?.close());

  it('grants no more window while its peer has not answered the CLOSE', async () => {
    let onOpen: (ch: ServerChannel) => void = () => {};
    const p = (pair = await ssh2Pair((_conn, accept) => onOpen(accept())));
    const opened = new Promise<ServerChannel>((resolve) => (onOpen = resolve));
    const client = await p.open();
    const server = await opened;
    holdToWindow(server);
    let received = 0;
    const waiters = new Set<{ bytes: number; done: () => void }>();
    server.on('data', (d: Buffer) => {
      received += d.length;
      for (const w of waiters) {
        if (received < w.bytes) continue;
        waiters.delete(w);
        w.done();
      }
    });
    const until = (bytes: number) => new Promise<void>((done) => (received >= bytes ? done() : waiters.add({ bytes, done })));
    client.on('error', () => {});

    // The peer never answers the relay's CLOSE; it counts the window it is granted after it.
    const proto = (p.client as unknown as { _protocol: ClientProtocol })._protocol;
    let closeSeen: () => void = () => {};
    const closeArrived = new Promise<void>((r) => (closeSeen = r));
    let closed = false;
    let grantedAfterClose = 0;
    proto._handlers.CHANNEL_CLOSE = () => {
      closed = true;
      closeSeen();
    };
    const adjust = proto._handlers.CHANNEL_WINDOW_ADJUST;
    proto._handlers.CHANNEL_WINDOW_ADJUST = (p, recipient, amount) => {
      if (closed) grantedAfterClose += amount;
      adjust(p, recipient, amount);
    };

    // Data flows, and the window is granted as the relay reads.
    send(client, 3 * MiB);
    await until(3 * MiB);
    closeChannel(server as unknown as SshChannelLike);
    await closeArrived;
    const windowLeft = (client as unknown as { outgoing: { window: number } }).outgoing.window;
    const before = received;
    send(client, 8 * MiB);
    await until(before + windowLeft);
    // Round trips: every grant the relay made for what it dropped reached the peer before the answers.
    for (let i = 0; i < 2; i++) await new Promise<void>((r) => p.client.forwardIn('127.0.0.1', 1, () => r()));

    assert.equal(grantedAfterClose, 0, `the relay granted ${grantedAfterClose} bytes of window after its CLOSE`);
    assert.equal(received - before, windowLeft, 'the peer sent what it had been granted before the CLOSE, and nothing more');
  });
});
