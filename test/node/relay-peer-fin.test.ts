/**
 * A peer that half-closes its TCP connection (FIN) has ended its SSH connection: the relay closes
 * it at once (real `tunnel-node`, ssh2 clients). From the FIN on, ssh2 writes nothing more to the
 * socket (its onWrite drops every packet once the socket's readable side ended, and Node replaces
 * the socket's write with writeAfterFIN, dropping the relay's packet-pool and batching wrappers),
 * but the relay's bridges went on: a Y that granted a huge window, stopped reading and then sent
 * FIN, while the relay's queue toward it was under --max-send-buffer (so the queue, stuck, never
 * went over it and nothing paused), had X's data encrypted and dropped at full speed, each packet
 * in a pooled buffer never given back (a fresh 32 KiB allocation per packet), until a keepalive
 * timeout (about 20 s at the defaults; for ever with keepalives off) ended the connection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { grantHugeWindow, ignoreEverything, socketOfClient } from './hostile-clients.js';
import { startHostileRelay } from './hostile-relay.js';
import { within } from './ssh-tools.js';

const EXPOSURE = 'hostx-peer-fin';
const CHUNK = 32 * 1024;
/** What X may send after Y's FIN before the test calls it data sent into the void. */
const AFTER_FIN = 64 << 20;

describe('a peer that sends FIN (real tunnel-node)', { timeout: 120_000 }, () => {
  it('is closed at once: the bridges feeding it stop', async (t) => {
    // A bound far above what Y's kernel buffers take, so the queue toward Y never reaches it; no keepalives.
    const stage = await startHostileRelay(['--max-send-buffer', '256MiB', '--keepalive-interval', '120s', '--drain-timeout', '2s', '--channel-memory', '1GiB'], 'hostx-fin-default');
    try {
      const x = await stage.client('xfin', { kind: 'expose', exposure: EXPOSURE, port: 22 });
      let sent = 0;
      let xClosed: () => void = () => {};
      const xChannelClosed = new Promise<void>((r) => (xClosed = r));
      let enough: () => void = () => {};
      let finAt = Infinity;
      const sentPastFin = new Promise<void>((r) => (enough = r));
      x.client.on('tcp connection', (_info, accept) => {
        const ch = accept();
        ch.on('error', () => {});
        ch.on('close', () => xClosed());
        ch.resume();
        const chunk = Buffer.alloc(CHUNK, 0x5a);
        const pump = () => {
          while (!ch.destroyed) {
            sent += CHUNK;
            if (sent - finAt >= AFTER_FIN) return enough();
            if (!ch.write(chunk)) return void ch.once('drain', pump);
          }
        };
        pump();
      });
      await new Promise<void>((resolve, reject) => x.client.forwardIn(EXPOSURE, 22, (err) => (err ? reject(err) : resolve())));

      const y = await stage.client('yfin', { kind: 'open', exposure: EXPOSURE });
      const ych = await stage.openChannel(y.client, EXPOSURE, 22);
      ych.on('error', () => {});
      grantHugeWindow(y.client, ych);
      ignoreEverything(y.client);
      // The queue toward Y grows (Y reads nothing), far under the bound.
      await stage.metricsUntil((m) => m.value('tunnel_node_send_buffer_bytes', { queue: 'socket' }) >= 2 << 20, 'data queued toward Y');
      const before = await stage.metrics();
      finAt = sent;
      socketOfClient(y.client).end();

      const outcome = await within(
        Promise.race([xChannelClosed.then(() => 'closed' as const), sentPastFin.then(() => 'sent into the void' as const)]),
        60_000,
        "X's channel closed, or X sent on",
      );
      const after = await stage.metrics();
      const allocated = after.value('tunnel_node_packet_buffers_allocated_total') - before.value('tunnel_node_packet_buffers_allocated_total');
      t.diagnostic(`after Y's FIN: X sent ${sent - finAt} bytes more; the relay's packet pool allocated ${allocated} buffers`);
      assert.equal(outcome, 'closed', `X sent ${sent - finAt} bytes after Y's FIN, and the relay took them`);
      assert.equal(stage.alive(), true);
    } finally {
      await stage.stop();
    }
  });
});
