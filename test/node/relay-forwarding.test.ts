import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Duplex } from 'node:stream';
import { mintLease, startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { parsePrometheusText } from './prom-text.js';
import { clientFiles, exchange, streamHash, writeCert, freePort, killAll, localForwardReady, spawnSsh, sshArgs, startHashService, tcpConnect, type ClientFiles } from './ssh-tools.js';

const NAME = 'hostx-ssh';
const MB = 1024 * 1024;
const SIZE = 100 * MB;

describe('relay forwarding with the real OpenSSH client', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let x: ClientFiles;
  let service: Awaited<ReturnType<typeof startHashService>>;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
    service = await startHashService(SIZE);
    x = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' });
    await writeCert(x, lease.certificate);
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === NAME);
    spawnSsh(sshArgs(x, relay.port, 'xowner', { extra: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${service.port}`] }));
    await online;
  });

  after(async () => {
    killAll();
    service.server.close();
    await relay.stop();
    await fc.stop();
  });

  async function yFiles(): Promise<ClientFiles> {
    const y = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: y.privateKey, user: 'yuser' });
    await writeCert(y, lease.certificate);
    return y;
  }

  const reusedPackets = async () => parsePrometheusText(await (await fetch(`http://127.0.0.1:${relay.metricsPort}/metrics`)).text()).value('tunnel_node_packet_buffers_reused_total');

  it('ssh -L carries 100 MB each way byte-exactly, with the reply after EOF, in reused packet buffers (node/packet-pool.ts)', async () => {
    const reusedBefore = await reusedPackets();
    const y = await yFiles();
    const localPort = await freePort();
    const p = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${localPort}:${NAME}:22`] }));
    await localForwardReady(p);
    await relay.logger.waitFor((l) => l.msg === 'connection authenticated' && l.fields.user === 'yuser');
    const sock = await tcpConnect(localPort);
    const r = await exchange(sock, SIZE);
    assert.equal(r.echoedHash, r.sentHash, 'X received exactly what Y sent');
    assert.equal(r.replyBytes, SIZE);
    assert.equal(r.replyHash, streamHash(SIZE), 'Y received exactly what X replied after EOF');
    // 200 MB is about 6,400 data packets the relay sent; most of them in a buffer written before.
    assert.ok((await reusedPackets()) - reusedBefore > 3200, 'the relay built its packets in buffers given back after their writes');
    p.child.kill();
  });

  it('ssh -W carries 100 MB each way byte-exactly, with the reply after EOF', async () => {
    const y = await yFiles();
    const p = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-W', `${NAME}:22`] }));
    const child = p.child;
    const stdio = Duplex.from({ readable: child.stdout!, writable: child.stdin! });
    const r = await exchange(stdio, SIZE);
    assert.equal(r.echoedHash, r.sentHash);
    assert.equal(r.replyBytes, SIZE);
    assert.equal(r.replyHash, streamHash(SIZE));
    assert.equal(await p.exited, 0, p.stderr());
  });
});
