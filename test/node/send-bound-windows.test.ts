/**
 * The send bound (`--max-send-buffer`) holds when a peer opens many used-up windows at once
 * (real `tunnel-node`, ssh2 clients). A bridge kept up to 64 KiB (CHANNEL_WRITE_LIMIT) queued in
 * an ssh2 channel whose peer's window was used up, and ssh2 hands such a queue to the socket the
 * moment a WINDOW_ADJUST arrives, past the bound: a Y that stopped reading and then opened the
 * windows of 16 channels at once put about 1 MiB in its socket queue against a 64 KiB bound
 * (helper-93; about 16 MiB per connection at the defaults). Now a bridge writes into an ssh2
 * channel only what its peer's window takes, and the rest waits in the source until the window
 * grows and the peer is under its bound.
 *
 * Y opens 16 channels with a window of 0; X writes 256 KiB on each (all of it waits in the relay).
 * Y opens one more channel with a huge window, X fills it until the queue toward Y (Y reads
 * nothing) is over the bound, then Y grants 1 MiB on each of the 16 channels in one write.
 * The relay's peak send queue stays within the bound and one chunk; then Y reads again and every
 * byte arrives.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { grantHugeWindow, socketOfClient, stopReading } from './hostile-clients.js';
import { startHostileRelay } from './hostile-relay.js';
import { within } from './ssh-tools.js';

const EXPOSURE = 'hostx-windows-bound';
const LIMIT = 64 * 1024;
const CHANNELS = 16;
const PER_CHANNEL = 256 * 1024;
const FILLER = 32 << 20;
const CHUNK = 32 * 1024;
/** One chunk's SSH packet: header, padding, MAC (generous). */
const PACKET_OVERHEAD = 256;

interface YProtocol {
  directTcpip(chan: number, initWindow: number, maxPacket: number, cfg: unknown): void;
  channelWindowAdjust(id: number, amount: number): void;
  tcpipForward(bindAddr: string, bindPort: number, wantReply: boolean): void;
}

/** Byte `i` of what X sends on channel `n`. */
const pattern = (n: number, len: number) => {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (n * 31 + i) & 0xff;
  return b;
};

describe('send bound: a Y opening the used-up windows of many channels at once (real tunnel-node)', { timeout: 180_000 }, () => {
  it('keeps the queue toward Y within the bound and one chunk, and delivers every byte', async (t) => {
    const stage = await startHostileRelay(
      ['--max-send-buffer', '64KiB', '--send-stall-timeout', '120s', '--keepalive-interval', '120s', '--drain-timeout', '2s', '--channel-memory', '1GiB'],
      'hostx-windows-default',
    );
    try {
      // X: writes PER_CHANNEL bytes (FILLER on the last channel) on each channel it is asked for, then ends it.
      const x = await stage.client('xwindows', { kind: 'expose', exposure: EXPOSURE, port: 22 });
      let accepted = 0;
      x.client.on('tcp connection', (_info, accept) => {
        const n = accepted++;
        const ch = accept();
        ch.on('error', () => {});
        ch.resume();
        const chunk = pattern(n, CHUNK);
        let left = n === CHANNELS ? FILLER : PER_CHANNEL;
        const pump = () => {
          while (left > 0) {
            left -= CHUNK;
            if (!ch.write(chunk)) return void ch.once('drain', pump);
          }
          ch.end();
        };
        pump();
      });
      await new Promise<void>((resolve, reject) => x.client.forwardIn(EXPOSURE, 22, (err) => (err ? reject(err) : resolve())));

      // Y: 16 channels whose window is 0 (announced in the open), then the filler with a huge one.
      const y = await stage.client('ywindows', { kind: 'open', exposure: EXPOSURE });
      const proto = (y.client as unknown as { _protocol: YProtocol })._protocol;
      const directTcpip = proto.directTcpip.bind(proto);
      proto.directTcpip = (chan, _window, maxPacket, cfg) => directTcpip(chan, 0, maxPacket, cfg);
      const channels: ClientChannel[] = [];
      for (let i = 0; i < CHANNELS; i++) channels.push(await stage.openChannel(y.client, EXPOSURE, 22));
      proto.directTcpip = directTcpip;
      const metricsOf = () => stage.metrics();
      // Everything X wrote on them waits in the relay (nothing may go to Y yet).
      await stage.metricsUntil((m) => m.value('tunnel_node_live_channel_bytes') >= CHANNELS * PER_CHANNEL, 'what X wrote on the 16 channels held in the relay');

      const filler = await stage.openChannel(y.client, EXPOSURE, 22);
      channels.push(filler);
      grantHugeWindow(y.client, filler);
      stopReading(y.client);
      // The kernel's buffers toward Y fill, then the relay's queue reaches the bound and stays
      // there (Y reads nothing): sampled until it has been over for 1.5 s on end.
      let overSince: number | undefined;
      await stage.metricsUntil(
        (m) => {
          if (m.value('tunnel_node_send_buffer_bytes', { queue: 'socket' }) < LIMIT) overSince = undefined;
          else overSince ??= Date.now();
          return overSince !== undefined && Date.now() - overSince >= 1_500;
        },
        'the queue toward Y over the bound for good',
        60_000,
      );

      // Y opens the 16 windows in one write, then asks for something the relay refuses: once that
      // refusal is counted, the relay has handled the window adjusts before it.
      const refusedBefore = (await metricsOf()).value('tunnel_node_refused_requests_total', { type: 'tcpip-forward' });
      const sock = socketOfClient(y.client);
      sock.cork();
      for (const ch of channels.slice(0, CHANNELS)) {
        proto.channelWindowAdjust((ch as unknown as { outgoing: { id: number } }).outgoing.id, 1 << 20);
      }
      proto.tcpipForward('not-in-lease', 22, true);
      sock.uncork();
      const peakOf = (m: Awaited<ReturnType<typeof metricsOf>>) => m.value('tunnel_node_send_buffer_peak_bytes');
      const m = await stage.metricsUntil(
        (m) => m.value('tunnel_node_refused_requests_total', { type: 'tcpip-forward' }) > refusedBefore || peakOf(m) > LIMIT + CHUNK + PACKET_OVERHEAD,
        'the relay handled the window adjusts',
      );
      t.diagnostic(`peak send queue after the window adjusts: ${peakOf(m)} bytes (bound ${LIMIT})`);
      assert.ok(peakOf(m) <= LIMIT + CHUNK + PACKET_OVERHEAD, `peak send queue ${peakOf(m)} bytes against a bound of ${LIMIT}`);

      // Y reads again, with room on every channel: all of it arrives, byte-exact.
      const got = channels.map((ch, n) => {
        const hash = createHash('sha256');
        let bytes = 0;
        ch.on('data', (d: Buffer) => {
          bytes += d.length;
          hash.update(d);
        });
        ch.on('error', () => {});
        return new Promise<{ bytes: number; digest: string; n: number }>((resolve) => ch.once('end', () => resolve({ bytes, digest: hash.digest('hex'), n })));
      });
      for (const ch of channels) grantHugeWindow(y.client, ch);
      sock.resume();
      const results = await within(Promise.all(got), 120_000, 'every channel ended at Y');
      for (const r of results) {
        const len = r.n === CHANNELS ? FILLER : PER_CHANNEL;
        const want = createHash('sha256');
        const chunk = pattern(r.n, CHUNK);
        for (let k = 0; k < len / CHUNK; k++) want.update(chunk);
        assert.equal(r.bytes, len, `channel ${r.n}`);
        assert.equal(r.digest, want.digest('hex'), `channel ${r.n} byte-exact`);
      }
      const after = await metricsOf();
      t.diagnostic(`peak send queue at the end: ${peakOf(after)} bytes`);
      assert.ok(peakOf(after) <= LIMIT + CHUNK + PACKET_OVERHEAD, `peak send queue ${peakOf(after)} bytes against a bound of ${LIMIT}`);
      assert.equal(stage.alive(), true);
    } finally {
      await stage.stop();
    }
  });
});
