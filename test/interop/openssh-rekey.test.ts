/**
 * The relay's curve25519-sha256 after its first connection uses node/ssh2-internals/
 * x25519-exchange.ts's key conversions (installed by node/ssh-server.ts): real OpenSSH clients,
 * one after the other, forcing curve25519 and re-keying every 256 KiB (`RekeyLimit`), each move
 * 2 MiB each way byte-exactly through one relay and exit 0.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Duplex } from 'node:stream';
import { originalX25519Methods } from '../../node/ssh2-internals.js';
import { mintLease, startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { clientFiles, exchange, killAll, spawnSsh, sshArgs, startHashService, streamHash, writeCert, type ClientFiles } from '../node/ssh-tools.js';

const SIZE = 2 << 20;
const NAME = 'hostx-rekey';

describe('OpenSSH clients re-keying with curve25519 against one relay', { timeout: 120_000 }, () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let service: Awaited<ReturnType<typeof startHashService>>;
  let y: ClientFiles;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc, { args: ['--max-rekeys-per-minute', '1000'] });
    service = await startHashService(SIZE);
    const x = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(x, (await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' })).certificate);
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === NAME);
    spawnSsh(sshArgs(x, relay.port, 'xowner', { extra: ['-N', '-o', 'KexAlgorithms=curve25519-sha256', '-o', 'RekeyLimit=256K', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${service.port}`] }));
    await online;
    y = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(y, (await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: y.privateKey, user: 'yuser', ttlSeconds: 3600 })).certificate);
  });

  after(async () => {
    killAll();
    service.server.close();
    await relay.stop();
    await fc.stop();
  });

  it('three clients in a row, each re-keying many times, move their bytes exactly', async () => {
    assert.ok(originalX25519Methods, "the first connection (X's) installed the replacement");
    for (let i = 0; i < 3; i++) {
      const p = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-v', '-o', 'KexAlgorithms=curve25519-sha256', '-o', 'RekeyLimit=256K', '-W', `${NAME}:22`] }));
      const r = await exchange(Duplex.from({ readable: p.child.stdout!, writable: p.child.stdin! }), SIZE);
      assert.equal(await p.exited, 0, p.stderr());
      assert.equal(r.echoedHash, r.sentHash, 'X received exactly what Y sent');
      assert.equal(r.replyHash, streamHash(SIZE), 'Y received exactly what X sent');
      assert.match(p.stderr(), /kex: algorithm: curve25519-sha256\b/);
      const exchanges = p.stderr().match(/SSH2_MSG_NEWKEYS received/g)?.length ?? 0;
      assert.ok(exchanges >= 4, `${exchanges} key exchanges:\n${p.stderr()}`);
    }
  });
});
