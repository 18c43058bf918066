/**
 * Hostile strangers (h-front): what anyone who can reach the relay's SSH port, with no account,
 * can make the relay do with a certificate of their own (OpenSSH's ssh-keygen and ssh).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from 'ssh2';
import { ConnectionEventSchema } from '../../protocol/node-api.js';
import { parseKeyLine } from '../../protocol/ssh-key.js';
import { ssh2SendPacket } from '../../node/ssh2-internals/protocol.js';
import { startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { clientFiles, killAll, spawnSsh, sshArgs } from './ssh-tools.js';

interface ClientProto {
  _handlers: Record<string, (...args: unknown[]) => void>;
  _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(p: Buffer): Buffer } };
  ping(): void;
}

/**
 * A stranger that completes the key exchange, never authenticates, and sends `count`
 * SSH_MSG_CHANNEL_OPEN of types it makes up (`type(i)`), then a keepalive; resolves once the
 * keepalive is answered (the relay handled every open before it).
 */
function unknownChannelOpens(port: number, hostKeyLine: string, count: number, type: (i: number) => string): Promise<void> {
  const client = new Client();
  const hostBlob = parseKeyLine(hostKeyLine).blob;
  client.on('error', () => {});
  return new Promise((resolve, reject) => {
    client.connect({ host: '127.0.0.1', port, username: 'nobody', hostVerifier: (k: Buffer) => k.equals(hostBlob), authHandler: () => {}, readyTimeout: 30_000 });
    const proto = (client as unknown as { _protocol: ClientProto })._protocol;
    const send = ssh2SendPacket();
    if (!send) return reject(new Error('ssh2 internals changed'));
    proto._handlers.SERVICE_ACCEPT = () => {
      const w = proto._packetRW.write;
      for (let i = 0; i < count; i++) {
        const name = Buffer.from(type(i));
        const packet = w.alloc(1 + 4 + name.length + 12);
        let p = w.allocStart;
        packet[p] = 90; // SSH_MSG_CHANNEL_OPEN
        packet.writeUInt32BE(name.length, ++p);
        name.copy(packet, (p += 4));
        packet.writeUInt32BE(i, (p += name.length));
        packet.writeUInt32BE(2 << 20, (p += 4));
        packet.writeUInt32BE(32 << 10, (p += 4));
        send(proto, w.finalize(packet));
      }
      const done = () => {
        client.end();
        resolve();
      };
      proto._handlers.REQUEST_FAILURE = done;
      proto._handlers.REQUEST_SUCCESS = done;
      proto._handlers.CHANNEL_OPEN_FAILURE = () => {};
      proto.ping();
    };
  });
}

describe('hostile strangers', { timeout: 120_000 }, () => {
  let fc: FakeControl;
  let relay: StartedRelay;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
  });
  after(async () => {
    killAll();
    await relay.stop();
    await fc.stop();
  });

  it("a certificate from the stranger's own CA puts nothing of it into the connection events the control plane validates", async () => {
    // The key id is what the relay reported as the event's lease_id: 1,000 characters and a
    // control character are outside ConnectionEventSchema, so the control plane refused the whole
    // batch (400) and the relay dropped it, with up to 999 other members' events in it.
    const files = await clientFiles(relay.port, relay.hostKeyLine);
    const ca = join(files.dir, 'rogue_ca');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
    await writeFile(`${files.keyFile}.pub`, execFileSync('ssh-keygen', ['-y', '-f', files.keyFile]));
    execFileSync('ssh-keygen', ['-q', '-s', ca, '-I', `${'k'.repeat(1000)}\u0007`, '-n', 'stranger', '-O', 'clear', '-O', 'permit-port-forwarding', `${files.keyFile}.pub`], {
      stdio: 'ignore',
    });
    const since = fc.events.length;
    const got = new Promise<void>((resolve) => fc.emitter.on('events', () => fc.events.slice(since).some((e) => e.type === 'auth_fail') && resolve()));
    const p = spawnSsh(sshArgs(files, relay.port, 'stranger', { cert: `${files.keyFile}-cert.pub`, extra: ['-N'] }));
    assert.equal(await p.exited, 255, p.stderr());
    await got;
    const fails = fc.events.slice(since).filter((e) => e.type === 'auth_fail');
    assert.ok(fails.some((e) => e.reason === 'ca_untrusted'), JSON.stringify(fails));
    for (const e of fails) assert.ok(ConnectionEventSchema.safeParse(e).success, `an event the control plane refuses: ${JSON.stringify(e).slice(0, 200)}`);
  });

  it('channel opens of types a stranger makes up, before authenticating, add no metric series and no long log lines', async () => {
    // Each type was a label of tunnel_node_refused_requests_total (kept for good) and was logged
    // whole: 35 KB a packet, as fast as anyone could send them, with no account.
    const since = relay.logger.lines.length;
    const before = relay.relay.metricsText().split('\n').filter((l) => l.startsWith('tunnel_node_refused_requests_total')).length;
    await unknownChannelOpens(relay.port, relay.hostKeyLine, 200, (i) => `made-up-${i}-${'x'.repeat(1000)}`);
    const series = relay.relay.metricsText().split('\n').filter((l) => l.startsWith('tunnel_node_refused_requests_total'));
    assert.ok(series.length <= before + 1, `${series.length - before} new series`);
    const long = relay.logger.lines.slice(since).filter((l) => JSON.stringify(l.fields).length > 2000);
    assert.equal(long.length, 0, `${long.length} long log lines, e.g. ${JSON.stringify(long[0] ?? {}).slice(0, 200)}`);
  });

  it('a user name of 30,000 characters is logged cut short', async () => {
    const since = relay.logger.lines.length;
    const client = new Client();
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    client.on('error', () => {});
    const hostBlob = parseKeyLine(relay.hostKeyLine).blob;
    client.connect({ host: '127.0.0.1', port: relay.port, username: 'u'.repeat(30_000), password: 'p', hostVerifier: (k: Buffer) => k.equals(hostBlob), readyTimeout: 30_000 });
    await closed;
    const refused = relay.logger.lines.slice(since).filter((l) => l.msg === 'authentication refused');
    assert.ok(refused.length > 0);
    for (const l of refused) assert.ok(JSON.stringify(l.fields).length < 2000, `a log line of ${JSON.stringify(l.fields).length} characters`);
  });

  it("a stranger's DISCONNECT description of 30,000 characters, sent before the key exchange, is logged cut short", async () => {
    const since = relay.logger.lines.length;
    const desc = Buffer.from('d'.repeat(30_000));
    const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
    // byte DISCONNECT, uint32 reason 2 (protocol error), string description, string language.
    const payload = Buffer.concat([Buffer.of(1), u32(2), u32(desc.length), desc, u32(0)]);
    const pad = 8 - ((payload.length + 5) % 8) + 8;
    const packet = Buffer.concat([u32(payload.length + pad + 1), Buffer.of(pad), payload, Buffer.alloc(pad)]);
    const sock = connect(relay.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.resume();
    await once(sock, 'connect');
    sock.write(Buffer.concat([Buffer.from('SSH-2.0-stranger\r\n'), packet]));
    const line = await relay.logger.waitFor((l) => l.msg === 'connection error', 10_000, since);
    sock.destroy();
    assert.ok(JSON.stringify(line.fields).length < 2000, `a log line of ${JSON.stringify(line.fields).length} characters`);
  });
});
