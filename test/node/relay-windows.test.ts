/**
 * Adaptive windows in the real `tunnel-node` (node/adaptive-window.ts), read from its /metrics:
 * only a client that identifies as Tunnel's CLI (`SSH-2.0-tunnel-cli`) gets a channel window that
 * grows on a long path (a delay line in front of the relay), never past --window-budget; the real OpenSSH client and any other ssh2 client get the
 * standard 2 MiB window (no channel is adopted at all). Transfers stay byte-exact either way.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startDelayLine } from '../../bench/lib/delay-line.js';
import { CLI_SOFTWARE } from '../../protocol/ssh-idents.js';
import { sendGlobalRequest } from '../../cli/ssh/ssh2-cert-auth.js';
import { startHostileRelay, type HostileRelay } from './hostile-relay.js';
import { connectWithCertificate } from './ssh2-cert-client.js';

const MiB = 1024 * 1024;
const BUDGET = 6 * MiB;
const CHANNEL_MAX = 8 * MiB;

describe('relay: adaptive windows only with Tunnel’s own CLI', () => {
  let stage: HostileRelay;
  before(async () => {
    // Keepalives a minute apart: the ping test below counts the pings a client gets, and ssh2's
    // keepalive adds one after 5 s without a packet from the client (a loaded machine).
    stage = await startHostileRelay(['--window-budget', '6MiB', '--max-channel-window', '8MiB', '--keepalive-interval', '60s'], 'hostx-windows');
  });
  after(async () => stage?.stop());

  const windows = async () => {
    const m = await stage.metrics();
    return {
      budget: m.value('tunnel_node_window_budget_bytes'),
      channelMax: m.value('tunnel_node_window_channel_max_bytes'),
      peak: m.value('tunnel_node_window_reserved_peak_bytes'),
      reserved: m.value('tunnel_node_window_reserved_bytes'),
      adopted: m.value('tunnel_node_window_channels', { state: 'all' }),
    };
  };

  it('OpenSSH and a plain ssh2 client keep the standard window', async () => {
    // A channel that is adopted counts in tunnel_node_window_channels while it is open; sample it
    // during each transfer, so a standard client that was adopted by mistake shows.
    let adoptedSeen = 0;
    const sampling = setInterval(() => {
      void windows().then((w) => (adoptedSeen = Math.max(adoptedSeen, w.adopted)), () => {});
    }, 20);
    try {
      await stage.legitOpenSsh(32 * MiB);
      await stage.legitTransfer(32 * MiB);
    } finally {
      clearInterval(sampling);
    }
    const w = await windows();
    assert.equal(w.budget, BUDGET);
    assert.equal(w.channelMax, CHANNEL_MAX);
    assert.equal(adoptedSeen, 0, 'no standard client channel was put under the window budget');
    assert.equal(w.peak, 0, 'no window grew');
  });

  it('a client identifying as tunnel-cli gets a growing window, within --window-budget', async () => {
    // Through a delay line (100 ms round trip): on loopback the window is not what limits a stream,
    // and it stays at the standard 2 MiB (node/adaptive-window.test simulates both). Y sends until
    // the relay reports that the window grew, up to 1 GiB: the window grows only while the sender
    // waits for it, and a sender slowed down by a busy machine may not for a while (a fixed 64 MiB
    // through a 40 ms line ended with no growth at load 13).
    const line = await startDelayLine({ targetPort: stage.relay.sshPort, oneWayMs: 50 });
    const grown = stage.metricsUntil((m) => m.value('tunnel_node_window_reserved_peak_bytes') > 0, 'the window grew above the standard 2 MiB', 300_000);
    try {
      await stage.legitTransfer(1024 * MiB, { ident: CLI_SOFTWARE, port: line.port, until: grown });
    } finally {
      await line.close();
    }
    await grown;
    const w = await windows();
    assert.ok(w.peak <= BUDGET, `reserved at most the budget (peak ${w.peak})`);
    // The channel closed: its reservation went back.
    await stage.metricsUntil((m) => m.value('tunnel_node_window_reserved_bytes') === 0 && m.value('tunnel_node_window_channels', { state: 'all' }) === 0, 'reservation given back');
  });

  it('pings a tunnel-cli client once it is authenticated (the round trip its windows judge samples by), and no other client', async () => {
    const pingsSeen = async (ident?: string) => {
      let pings = 0;
      const creds = await stage.credentials('yping', { kind: 'open', exposure: stage.exposure });
      const c = await connectWithCertificate({
        ...creds,
        ident,
        debug: (line) => {
          if (line.includes('Inbound: GLOBAL_REQUEST (keepalive@openssh.com)')) pings++;
        },
      });
      try {
        // Replies come in request order and the relay pinged before it read this request: once
        // its reply is here, a ping sent at authentication has arrived too.
        assert.equal(await sendGlobalRequest(c, 'marker@tunnel.test', Buffer.alloc(0)), false);
        return pings;
      } finally {
        c.end();
      }
    };
    assert.equal(await pingsSeen(CLI_SOFTWARE), 1, 'a tunnel-cli client is pinged once');
    assert.equal(await pingsSeen(), 0, 'a plain ssh2 client is not pinged (only by the keepalive, a minute idle here)');
  });
});
