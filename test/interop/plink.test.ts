/**
 * PuTTY's plink (Debian putty-tools 0.78) as Y (`-L`, `-nc`) and as X (`-R`) against the relay.
 * plink sends `winadj@putty.projects.tartarus.org` channel requests with want-reply during bulk
 * transfers; when the relay answered one after it had closed the channel, plink dropped the
 * whole connection ("Received SSH2_MSG_CHANNEL_FAILURE for nonexistent channel") after the
 * first transfer (issue 8; fixed by dropRequestsAfterClose in node/ssh2-internals.ts).
 * Each connection here carries three consecutive 10 MiB transfers each way and stays up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Duplex } from 'node:stream';
import { mintLease, startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import {
  clientFiles,
  exchange,
  freePort,
  killAll,
  localForwardReady,
  sendAndReceive,
  spawnSsh,
  sshArgs,
  startHashService,
  startSpeakFirstService,
  streamHash,
  tcpConnect,
  writeCert,
  type ClientFiles,
  type Proc,
} from '../node/ssh-tools.js';
import { puttyKey, spawnPlink } from './putty.js';

const MiB = 1024 * 1024;
const SIZE = 10 * MiB;
const NAME = 'hostx-openssh';
const PUTTY_X = 'hostx-putty';

/** One transfer: SIZE bytes up, the service's hash of them and SIZE bytes back, all checked. */
async function transfer(duplex: Parameters<typeof exchange>[0], what: string): Promise<void> {
  const r = await exchange(duplex, SIZE);
  assert.equal(r.echoedHash, r.sentHash, `${what}: X received exactly what Y sent`);
  assert.equal(r.replyBytes, SIZE, `${what}: reply length`);
  assert.equal(r.replyHash, streamHash(SIZE), `${what}: Y received exactly what X sent`);
}

/** Both directions at once against a speak-first service (the relay closes right after its last bytes). */
async function transferBothWays(
  duplex: Parameters<typeof sendAndReceive>[0],
  service: { nextHash(): Promise<string> },
  what: string,
): Promise<void> {
  const r = await sendAndReceive(duplex, SIZE);
  assert.equal(r.receivedBytes, SIZE, `${what}: bytes from X`);
  assert.equal(r.receivedHash, streamHash(SIZE), `${what}: Y received exactly what X sent`);
  assert.equal(await service.nextHash(), r.sentHash, `${what}: X received exactly what Y sent`);
}

function assertAlive(p: Proc, what: string): void {
  assert.equal(p.child.exitCode, null, `${what} exited:\n${p.stderr()}`);
  assert.equal(p.child.signalCode, null, `${what} was killed:\n${p.stderr()}`);
  assert.doesNotMatch(p.stderr(), /FATAL ERROR|nonexistent channel/, p.stderr());
}

describe('PuTTY plink against the relay', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let service: Awaited<ReturnType<typeof startHashService>>;
  let speakFirst: Awaited<ReturnType<typeof startSpeakFirstService>>;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
    service = await startHashService(SIZE);
    speakFirst = await startSpeakFirstService(SIZE);
    // X for the Y tests is OpenSSH, so only plink's side is new.
    const x = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(x, (await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' })).certificate);
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === NAME);
    spawnSsh(sshArgs(x, relay.port, 'xowner', { extra: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${service.port}`] }));
    await online;
  });

  after(async () => {
    killAll();
    service.server.close();
    speakFirst.server.close();
    await relay.stop();
    await fc.stop();
  });

  async function leaseFiles(grant: Parameters<typeof mintLease>[1]['grant'], user: string): Promise<{ files: ClientFiles; ppk: string }> {
    const files = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(files, (await mintLease(fc, { grant, clientPublicKey: files.privateKey, user })).certificate);
    return { files, ppk: await puttyKey(files) };
  }

  it('plink -L (Y): three consecutive 10 MiB transfers each way over one connection, which stays up', async () => {
    const { files, ppk } = await leaseFiles({ kind: 'open', exposure: NAME }, 'yputty');
    const localPort = await freePort();
    const plink = spawnPlink(files, ppk, relay, 'yputty', ['-N', '-L', `127.0.0.1:${localPort}:${NAME}:22`]);
    await plink.waitStderr(new RegExp(`Local port 127\\.0\\.0\\.1:${localPort} forwarding to ${NAME}:22`));
    for (let i = 1; i <= 3; i++) await transfer(await tcpConnect(localPort), `transfer ${i}`);
    // A fourth connection after the third has closed: plink is still there and still forwards.
    await transfer(await tcpConnect(localPort), 'after three transfers');
    assertAlive(plink, 'plink -L');
    plink.child.kill();
  });

  it('plink -nc (Y): three consecutive runs each move 10 MiB each way and exit 0', async () => {
    const { files, ppk } = await leaseFiles({ kind: 'open', exposure: NAME }, 'yputty');
    for (let i = 1; i <= 3; i++) {
      const plink = spawnPlink(files, ppk, relay, 'yputty', ['-nc', `${NAME}:22`]);
      await transfer(Duplex.from({ readable: plink.child.stdout!, writable: plink.child.stdin! }), `plink -nc run ${i}`);
      assert.equal(await plink.exited, 0, plink.stderr());
      assert.doesNotMatch(plink.stderr(), /FATAL ERROR|nonexistent channel/, plink.stderr());
    }
  });

  it('plink -R (X): three consecutive 10 MiB transfers each way reach it, and it stays connected', async () => {
    const { files, ppk } = await leaseFiles({ kind: 'expose', exposure: PUTTY_X, port: 22 }, 'xputty');
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === PUTTY_X);
    // X's service speaks first, so the relay closes plink's channel right after the last bytes
    // it forwards to plink (the moment plink's winadj requests raced the close).
    const plink = spawnPlink(files, ppk, relay, 'xputty', ['-N', '-R', `${PUTTY_X}:22:127.0.0.1:${speakFirst.port}`]);
    await online;
    // Y is OpenSSH over one connection (-L), so each transfer is a new forwarded channel to plink.
    const y = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(y, (await mintLease(fc, { grant: { kind: 'open', exposure: PUTTY_X }, clientPublicKey: y.privateKey, user: 'yuser' })).certificate);
    const localPort = await freePort();
    const ssh = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${localPort}:${PUTTY_X}:22`] }));
    await localForwardReady(ssh);
    for (let i = 1; i <= 3; i++) await transferBothWays(await tcpConnect(localPort), speakFirst, `transfer ${i}`);
    await transferBothWays(await tcpConnect(localPort), speakFirst, 'after three transfers');
    assertAlive(plink, 'plink -R');
    plink.child.kill();
    ssh.child.kill();
  });
});
