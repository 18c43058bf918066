/**
 * Hostile clients, finding 2 of issue 8 (unbounded memory from one authenticated connection):
 * a Y that grants a ~4 GiB window and stops reading, a client that floods `keepalive@openssh.com`
 * requests without reading the replies, and a client that starts a re-key and never finishes it.
 * The real `tunnel-node` binary with a small send bound; what it buffered is read from its own
 * accounting on /metrics (never RSS or wall clock), and after each attack a legitimate OpenSSH
 * client still moves 10 MiB byte-exactly.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connectWithCertificate, keepaliveFlood, openDirect, preauthKeepaliveFlood, socketOfClient, stallRekey, windowFlood, windowOverrun } from './hostile-clients.js';
import { startHostileRelay, type HostileRelay } from './hostile-relay.js';
import { within } from './ssh-tools.js';

const EXPOSURE = 'hostx-hostile-mem';
const FIREHOSE = 'hostx-firehose';
const SINK = 'hostx-sink';
const LIMIT = 256 * 1024;
const TEN_MIB = 10 << 20;
/** One packet per feeding channel may land after the bound is reached, and one read's replies. */
const SLACK = 256 * 1024;

/** A service that sends `bytes` to whoever connects, with backpressure, then ends. */
async function startFirehose(bytes: number): Promise<Server> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const server = createServer((sock) => {
    sock.on('error', () => {});
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        left -= chunk.length;
        if (!sock.write(chunk)) return void sock.once('drain', pump);
      }
      sock.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

/** A service that accepts and never reads: X's channel fills, and the relay's bridge pauses Y's. */
async function startSink(): Promise<Server> {
  const server = createServer((sock) => {
    sock.on('error', () => {});
    sock.pause();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

describe('hostile clients: memory (finding 2)', () => {
  let stage: HostileRelay;
  let firehose: Server;
  let sink: Server;

  before(async () => {
    // Keepalive and login grace far above the stall timeout, so the send bound is what ends each attacker.
    stage = await startHostileRelay(['--max-send-buffer', String(LIMIT), '--send-stall-timeout', '2s', '--keepalive-interval', '60s', '--login-grace-time', '60s', '--drain-timeout', '2s'], EXPOSURE);
    firehose = await startFirehose(1 << 30);
    await stage.expose(FIREHOSE, (firehose.address() as AddressInfo).port);
    sink = await startSink();
    await stage.expose(SINK, (sink.address() as AddressInfo).port);
  });
  after(async () => {
    firehose?.close();
    sink?.close();
    await stage?.stop();
  });

  const counters = async () => {
    const m = await stage.metrics();
    return {
      throttled: m.value('tunnel_node_send_throttled_total'),
      readPaused: m.value('tunnel_node_send_read_paused_total'),
      stalls: m.value('tunnel_node_send_stall_disconnects_total'),
      peak: m.value('tunnel_node_send_buffer_peak_bytes'),
      limit: m.value('tunnel_node_send_buffer_limit_bytes'),
    };
  };

  const stallLine = (from: number) => stage.logs(from).find((l) => l.msg === 'peer took nothing from a full send buffer; disconnecting');

  it('a Y that grants a ~4 GiB window and stops reading is throttled, then disconnected; X is paused, not buffered', async (t) => {
    const before = await counters();
    assert.equal(before.limit, LIMIT);
    const from = stage.relay.stderr().length;
    const attacker = await windowFlood(await stage.credentials('yflood', { kind: 'open', exposure: FIREHOSE }), FIREHOSE, 22);
    const relayClosed = stage.relayClosed('yflood', from);
    let gone = false;
    void relayClosed.then(() => (gone = true), () => (gone = true));
    // While the relay holds a full send queue for Y, the gc pacer counts it as live channel data
    // (node/forwarding/live-bytes.ts: the queues of open bridges' ends); one scrape reads both.
    let liveWhileThrottled = -1;
    while (!gone && liveWhileThrottled < 0) {
      const m = await stage.metrics();
      if (m.value('tunnel_node_send_throttled_connections') >= 1) liveWhileThrottled = m.value('tunnel_node_live_channel_bytes');
    }
    await relayClosed;
    assert.ok(liveWhileThrottled >= LIMIT, `live channel data while Y was throttled: ${liveWhileThrottled} (its queue holds at least ${LIMIT})`);
    // Reading again, the attacker finds the relay's end of the connection gone.
    socketOfClient(attacker.client).resume();
    await within(attacker.closed, 30_000, "the window-flooding Y's connection was closed");
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);

    const after = await counters();
    assert.equal(after.stalls, before.stalls + 1, 'not disconnected for a stalled send buffer');
    assert.ok(after.throttled > before.throttled, 'never throttled');
    assert.ok(after.peak >= LIMIT, `the attack never filled the send buffer (peak ${after.peak})`);
    assert.ok(after.peak <= LIMIT + SLACK, `the relay buffered ${after.peak} bytes for one peer; the bound is ${LIMIT}`);
    const line = stallLine(from);
    assert.ok(line, 'no stall log line');
    assert.ok(Number(line.socketBytes) >= LIMIT, JSON.stringify(line));
    t.diagnostic(`window flood: peak send buffer ${after.peak} bytes (bound ${LIMIT}); at the stall ${String(line.socketBytes)} bytes in the socket queue`);

    // Nothing is left queued for anyone once the attacker is gone.
    const m = await stage.metrics();
    assert.equal(m.value('tunnel_node_send_throttled_connections'), 0);
    assert.equal(m.value('tunnel_node_bridge_buffer_bytes'), 0);
    assert.equal(m.value('tunnel_node_send_buffer_bytes', { queue: 'socket' }), 0);
    assert.equal(m.value('tunnel_node_live_channel_bytes'), 0, 'the closed bridge still counted as live');
    await stage.legitOpenSsh(TEN_MIB);
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);
  });

  it('a keepalive@openssh.com flood that never reads a reply makes the relay stop reading it, then disconnect it', async (t) => {
    const before = await counters();
    const from = stage.relay.stderr().length;
    const attacker = await connectWithCertificate(await stage.credentials('kaflood', { kind: 'open', exposure: EXPOSURE }));
    attacker.on('error', () => {});
    const closed = new Promise<void>((r) => attacker.once('close', () => r()));
    const sent = await keepaliveFlood(attacker, 3_000_000);
    await within(closed, 30_000, "the flooding client's connection was closed");
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);

    const after = await counters();
    assert.ok(after.readPaused > before.readPaused, `the relay never stopped reading the flood (${sent} requests sent)`);
    assert.equal(after.stalls, before.stalls + 1, 'not disconnected for a stalled send buffer');
    assert.ok(after.peak <= 2 * LIMIT + SLACK, `the relay buffered ${after.peak} bytes of replies for one peer; it stops reading at ${2 * LIMIT}`);
    const line = stallLine(from);
    assert.ok(line, 'no stall log line');
    t.diagnostic(`keepalive flood: ${sent} requests sent; at the stall ${String(line.socketBytes)} bytes of replies in the socket queue (reading stops at ${2 * LIMIT}); relay-wide peak so far ${after.peak}`);
    await stage.legitOpenSsh(TEN_MIB);
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);
  });

  it('the same flood before authentication (no certificate at all) is bounded and disconnected the same way', async (t) => {
    const before = await counters();
    const from = stage.relay.stderr().length;
    const { sent, closed } = await preauthKeepaliveFlood({ port: stage.relay.sshPort, hostKeyLine: stage.hostKeyLine }, 3_000_000);
    await within(closed, 30_000, "the unauthenticated flooder's connection was closed");
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);
    const after = await counters();
    assert.ok(after.readPaused > before.readPaused, `the relay never stopped reading the flood (${sent} requests sent)`);
    assert.equal(after.stalls, before.stalls + 1, 'not disconnected for a stalled send buffer');
    const line = stallLine(from);
    assert.ok(line, 'no stall log line');
    assert.ok(Number(line.socketBytes) <= 2 * LIMIT + SLACK, JSON.stringify(line));
    assert.equal(stage.logs(from).some((l) => l.msg === 'connection authenticated'), false);
    t.diagnostic(`unauthenticated keepalive flood: ${sent} requests sent; at the stall ${String(line.socketBytes)} bytes of replies in the socket queue`);
    await stage.legitOpenSsh(TEN_MIB);
    assert.ok(stage.alive());
  });

  it('a client that starts a re-key and never finishes it is throttled on the key exchange queue, then disconnected', async (t) => {
    const before = await counters();
    const from = stage.relay.stderr().length;
    const attacker = await connectWithCertificate(await stage.credentials('yrekey', { kind: 'open', exposure: FIREHOSE }));
    attacker.on('error', () => {});
    const closed = new Promise<void>((r) => attacker.once('close', () => r()));
    const ch = await openDirect(attacker, FIREHOSE, 22);
    // Data is flowing to the attacker under ssh2's own window; now it stops reading and, in one
    // write, grants a huge window and sends KEXINIT, never continuing the exchange.
    await new Promise<void>((r) => ch.once('data', () => r()));
    stallRekey(attacker, ch);
    await stage.relayClosed('yrekey', from);
    socketOfClient(attacker).resume();
    await within(closed, 30_000, "the re-key staller's connection was closed");
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);

    const after = await counters();
    assert.equal(after.stalls, before.stalls + 1, 'not disconnected for a stalled send buffer');
    const line = stallLine(from);
    assert.ok(line, 'no stall log line');
    // How the bound splits between the socket and ssh2's key-exchange queue depends on how much was
    // in flight when the re-key began (scheduling); what must hold is that the re-key queue is
    // counted and the two together reached the bound.
    assert.ok(Number(line.keyExchangeBytes) > 0, `ssh2's key exchange queue was not counted: ${JSON.stringify(line)}`);
    assert.ok(Number(line.keyExchangeBytes) + Number(line.socketBytes) >= LIMIT, `the stall came before the bound: ${JSON.stringify(line)}`);
    assert.ok(Number(line.socketBytes) + Number(line.keyExchangeBytes) <= LIMIT + SLACK, JSON.stringify(line));
    assert.ok(after.peak <= 2 * LIMIT + SLACK);
    t.diagnostic(`stalled re-key: at the stall ${String(line.keyExchangeBytes)} bytes in ssh2's key exchange queue, ${String(line.socketBytes)} in the socket queue (bound ${LIMIT})`);
    await stage.legitOpenSsh(TEN_MIB);
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);
  });

  it('a Y that sends channel data past the window it was granted is disconnected; the relay does not hold what it sent', async (t) => {
    const from = stage.relay.stderr().length;
    const y = await connectWithCertificate(await stage.credentials('yoverrun', { kind: 'open', exposure: SINK }));
    y.on('error', () => {});
    const closed = new Promise<void>((r) => y.once('close', () => r()));
    const ch = await openDirect(y, SINK, 22);
    // 64 MiB against a 2 MiB window, while X (whose service never reads) holds the bridge paused:
    // ssh2 alone pushed all of it into the paused channel (the relay held 263 MB for 256 MiB sent).
    const sent = await windowOverrun(y, ch, 64 << 20);
    const line = await stage.relayClosed('yoverrun', from);
    await within(closed, 30_000, "the overrunning Y's connection was closed");
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);
    const why = stage.logs(from).find((l) => l.msg === 'peer sent channel data beyond the window; disconnecting' && l.sessionId === line.sessionId);
    assert.ok(why, 'the relay did not say why it closed the connection');
    assert.ok(Number(why.window) < Number(why.bytes), JSON.stringify(why));
    const m = await stage.metrics();
    assert.equal(m.value('tunnel_node_refused_requests_total', { type: 'channel_data_beyond_window' }), 1);
    assert.equal(m.value('tunnel_node_bridge_buffer_bytes'), 0);
    t.diagnostic(`window overrun: ${sent} bytes sent before the close; ${JSON.stringify({ window: why.window, bytes: why.bytes })}`);
    await stage.legitOpenSsh(TEN_MIB);
    assert.ok(stage.alive(), `the relay is not running:\n${stage.relay.stderr().slice(-3000)}`);
  });
});
