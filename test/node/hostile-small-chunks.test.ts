/**
 * Hostile members: channel data held in many small packets. Channel memory is counted in bytes
 * (windows, --channel-memory), while ssh2 pushes each CHANNEL_DATA packet into the channel's
 * readable side as a Buffer of its own, about 250 bytes of the relay's heap whatever its size: Y
 * sending 1-byte packets into a channel the bridge paused (X grants no window) made the relay hold
 * two million Buffers for one 2 MiB window (its RSS grew by about 500 MB a channel: 64 MB to 1.05 GB for two; joined, 64 to 83 MB). Small
 * chunks that wait are now joined (node/ssh2-internals/small-chunks.ts): the real `tunnel-node`
 * holds about one chunk per 32 KiB (its /metrics), and what it held reaches X byte-exact.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client, ClientChannel } from 'ssh2';
import { openDirect, socketOfClient } from './hostile-clients.js';
import { startHostileRelay, type HostileRelay } from './hostile-relay.js';

const SINK = 'hostx-no-window';
const PACKETS = 200_000;

interface Proto {
  channelOpenConfirm(remote: number, local: number, initWindow: number, maxPacket: number): void;
  channelData(id: number, data: Buffer): void;
  channelWindowAdjust(id: number, n: number): void;
}
const protocolOf = (c: Client) => (c as unknown as { _protocol: Proto })._protocol;
type Windowed = { incoming: { window: number }; outgoing: { id: number } };

/** X: exposes `name` and confirms every channel with a window of 0 (the relay can pass it nothing until `grant`). */
async function exposeNoWindow(x: Client, name: string, channels: ClientChannel[]): Promise<void> {
  const proto = protocolOf(x);
  const confirm = proto.channelOpenConfirm.bind(proto);
  proto.channelOpenConfirm = (remote, local, _w, maxPacket) => confirm(remote, local, 0, maxPacket);
  x.on('tcp connection', (_info, accept) => void channels.push(accept()));
  await new Promise<void>((resolve, reject) => x.forwardIn(name, 22, (err) => (err ? reject(err) : resolve())));
}

/** Sends one CHANNEL_DATA packet per byte of `data` on `ch`, waiting for the socket to drain every MiB queued. */
function oneBytePackets(y: Client, ch: ClientChannel, data: Buffer): Promise<number> {
  const proto = protocolOf(y);
  const id = (ch as unknown as Windowed).outgoing.id;
  const sock = socketOfClient(y);
  let sent = 0;
  return new Promise((resolve) => {
    const go = () => {
      while (sent < data.length && sock.writable) {
        proto.channelData(id, data.subarray(sent, sent + 1));
        sent++;
        if (sock.writableLength > 1 << 20) return void sock.once('drain', go);
      }
      resolve(sent);
    };
    sock.once('close', () => resolve(sent));
    go();
  });
}

describe('hostile: small packets into a paused channel are held joined', { timeout: 300_000 }, () => {
  let stage: HostileRelay;
  const xs: ClientChannel[] = [];
  let x: Client;
  before(async () => {
    stage = await startHostileRelay(['--keepalive-interval', '600s']);
    x = (await stage.client('xsink', { kind: 'expose', exposure: SINK, port: 22 })).client;
    await exposeNoWindow(x, SINK, xs);
  });
  after(async () => stage?.stop());

  it('holds about a chunk per 32 KiB, delivers every byte in order once X grants window, and a legitimate Y still passes', async () => {
    const y = await stage.client('ysmall', { kind: 'open', exposure: SINK });
    const ch = await openDirect(y.client, SINK, 22);
    const data = Buffer.alloc(PACKETS);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
    assert.equal(await oneBytePackets(y.client, ch, data), PACKETS);
    const m = await stage.metricsUntil((m) => m.value('tunnel_node_bridge_buffer_bytes') >= PACKETS, 'the relay holds every byte Y sent');
    const chunks = m.value('tunnel_node_bridge_buffer_chunks');
    // One Buffer per packet on the old code (200,000); joined, one per 32 KiB and a few more.
    assert.ok(chunks <= 64, `the relay holds ${PACKETS} bytes in ${chunks} chunks`);
    assert.ok(stage.alive());

    // X grants window now: what the relay held arrives whole and in order.
    assert.equal(xs.length, 1);
    const xch = xs[0]!;
    const got: Buffer[] = [];
    let n = 0;
    const all = new Promise<void>((resolve) =>
      xch.on('data', (b: Buffer) => {
        got.push(b);
        n += b.length;
        if (n >= PACKETS) resolve();
      }),
    );
    (xch as unknown as Windowed).incoming.window += PACKETS;
    protocolOf(x).channelWindowAdjust((xch as unknown as Windowed).outgoing.id, PACKETS);
    await all;
    assert.ok(Buffer.concat(got).equals(data), 'what X received differs from what Y sent');
    y.client.end();
    await stage.legitTransfer();
  });
});
