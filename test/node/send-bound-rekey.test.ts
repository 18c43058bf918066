/**
 * An honest X with many busy channels that re-keys while the relay's queue toward it is over the
 * send bound (`--max-send-buffer`, the 1 MiB default), with the real `tunnel-node` and ssh2
 * clients. During a key exchange ssh2 holds every packet the relay sends until it reads X's
 * NEWKEYS, so the relay must keep reading X. When a bridge wrote its chunk first and checked the
 * bound after, 64 channels each added a chunk past the bound: the queue reached twice it
 * (2.85 MiB), the relay stopped reading X, the key exchange never ended, and X was disconnected
 * as stalled with about 7 of its 128 MiB (helper-80; this test failed so 3 times in 3 on 12e05bf).
 * Now bridges write nothing to a peer that is over, and X gets every byte. X stops reading its
 * socket, Y sends 2 MiB on each of 64 channels, and X re-keys once the queue toward it has stayed
 * over the bound (the kernel's buffers full), then reads again.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import type { ClientChannel } from 'ssh2';
import { socketOfClient } from './hostile-clients.js';
import { startHostileRelay } from './hostile-relay.js';
import { within } from './ssh-tools.js';

const EXPOSURE = 'hostx-rekey-bound';
const CHANNELS = 64;
const PER_CHANNEL = 2 << 20;
const CHUNK = 32 * 1024;
/** The relay's default --max-send-buffer. */
const LIMIT = 1 << 20;

describe('send bound: an X re-keying with many busy channels (real tunnel-node)', { timeout: 180_000 }, () => {
  it('gets every byte: the key exchange completes while the queue toward X is over the bound', async () => {
    // A short stall timeout, so that a relay that stopped reading X cuts it off within the test.
    // Channel memory for all 128 channels' standard windows (--channel-memory's share would give
    // most of them 64 KiB: Y could not write its 2 MiB per channel ahead, and there would be no backlog).
    const stage = await startHostileRelay(['--send-stall-timeout', '10s', '--keepalive-interval', '120s', '--drain-timeout', '2s', '--channel-memory', '1GiB'], 'hostx-rekey-default');
    try {
      const x = await stage.client('xrekey', { kind: 'expose', exposure: EXPOSURE, port: 22 });
      const received: number[] = [];
      const hashes: ReturnType<typeof createHash>[] = [];
      let ended = 0;
      let accepted = 0;
      let flowing = false;
      const allAccepted = new Promise<void>((resolve) =>
        x.client.on('tcp connection', (_info, accept) => {
          const ch = accept();
          const i = accepted++;
          received[i] = 0;
          hashes[i] = createHash('sha256');
          ch.on('data', (d: Buffer) => {
            received[i] = received[i]! + d.length;
            hashes[i]!.update(d);
            if (!flowing) {
              flowing = true;
              x.client.emit('first data');
            }
          });
          ch.on('error', () => {});
          ch.on('end', () => {
            ended++;
            ch.end();
            if (ended === CHANNELS) x.client.emit('all ended');
          });
          if (accepted === CHANNELS) resolve();
        }),
      );
      await new Promise<void>((resolve, reject) => x.client.forwardIn(EXPOSURE, 22, (err) => (err ? reject(err) : resolve())));

      const y = await stage.client('yrekey', { kind: 'open', exposure: EXPOSURE });
      const channels: ClientChannel[] = [];
      for (let i = 0; i < CHANNELS; i++) channels.push(await stage.openChannel(y.client, EXPOSURE, 22));
      await within(allAccepted, 30_000, 'X accepted every channel');

      // X stops reading its socket once data flows; Y writes 2 MiB into every channel.
      const xSock = socketOfClient(x.client);
      const chunk = Buffer.alloc(CHUNK, 0xab);
      const first = once(x.client, 'first data');
      const written = Promise.all(channels.map((ch) => once(ch, 'finish')));
      for (const ch of channels) {
        ch.on('error', () => {});
        ch.resume();
        let left = PER_CHANNEL;
        const pump = () => {
          while (left > 0) {
            left -= CHUNK;
            if (!ch.write(chunk)) return void ch.once('drain', pump);
          }
          ch.end();
        };
        pump();
      }
      await within(first, 30_000, 'X received data');
      xSock.pause();
      // A backlog: Y has sent everything (its 2 MiB per channel fit the relay's window), the
      // queue toward X is over the bound, and every bridge holds data behind it.
      await within(written, 60_000, 'Y wrote everything');
      const sendQueue = (m: Awaited<ReturnType<typeof stage.metrics>>) =>
        m.value('tunnel_node_send_buffer_bytes', { queue: 'socket' }) + m.value('tunnel_node_send_buffer_bytes', { queue: 'key_exchange' });
      await stage.metricsUntil((m) => m.value('tunnel_node_live_channel_bytes') >= LIMIT + CHANNELS * CHUNK, 'a backlog behind the bound');
      // Until the kernel's buffers between the relay and X are full, they take more now and then,
      // the queue dips under the bound and the bridges feed X again; the failure needs the
      // state after that: the queue over the bound for good (1.5 s on end, sampled).
      let overSince: number | undefined;
      await stage.metricsUntil((m) => {
        if (sendQueue(m) < LIMIT) overSince = undefined;
        else overSince ??= Date.now();
        return overSince !== undefined && Date.now() - overSince >= 1_500;
      }, 'the queue toward X over the bound for good', 60_000);

      // X re-keys, then reads again.
      const rekeyed = once(x.client, 'handshake');
      const closed = once(x.client, 'close').then(() => {
        throw new Error(`X was disconnected with ${received.reduce((a, b) => a + b, 0)} of ${CHANNELS * PER_CHANNEL} bytes`);
      });
      closed.catch(() => {}); // raced below; X's close at stop() is no failure
      (x.client as unknown as { _protocol: { rekey(): void } })._protocol.rekey();
      xSock.resume();
      await within(Promise.race([rekeyed, closed]), 60_000, 'the re-key completed');
      await within(Promise.race([once(x.client, 'all ended'), closed]), 60_000, 'every channel ended at X');

      const want = createHash('sha256');
      for (let k = 0; k < PER_CHANNEL / CHUNK; k++) want.update(chunk);
      const digest = want.digest('hex');
      assert.deepEqual(received, new Array<number>(CHANNELS).fill(PER_CHANNEL));
      assert.ok(hashes.every((h) => h.digest('hex') === digest), 'every channel byte-exact');
      assert.equal(stage.alive(), true);
    } finally {
      await stage.stop();
    }
  });
});
