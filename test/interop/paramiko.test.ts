/**
 * paramiko (Debian's python3-paramiko) with the lease certificate, as X (remote forward) and
 * as Y (direct-tcpip), driven through test/interop/paramiko_client.py. paramiko has no AEAD
 * cipher, so this also covers CTR with the ETM MACs.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseKeyLine } from '../../protocol/ssh-key.js';
import { mintLease, repoRoot, startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { waitForLine } from '../harness/streams.js';
import {
  clientFiles,
  exchange,
  freePort,
  killAll,
  localForwardReady,
  spawnSsh,
  sshArgs,
  startHashService,
  streamHash,
  tcpConnect,
  writeCert,
  type ClientFiles,
} from '../node/ssh-tools.js';

const SIZE = 10 * 1024 * 1024;
const NAME = 'hostx-openssh';
const PARAMIKO_X = 'hostx-paramiko';
// Debian's interpreter, where python3-paramiko is installed (not whatever python3 is first on PATH).
const PYTHON = '/usr/bin/python3';
const SCRIPT = join(repoRoot(), 'test', 'interop', 'paramiko_client.py');

type Paramiko = ChildProcess & { output(): { stdout: string; stderr: string } };
const children = new Set<ChildProcess>();

function spawnParamiko(mode: 'x' | 'y', relay: StartedRelay, user: string, files: ClientFiles, name: string, extra: string[] = []): Paramiko {
  const hostKey = parseKeyLine(relay.hostKeyLine).blob.toString('base64');
  const child = spawn(PYTHON, [SCRIPT, mode, String(relay.port), user, files.keyFile, files.certFile, hostKey, name, ...extra], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stdout = '';
  let stderr = '';
  // Y's stdout is binary data; only X's ("forwarding") is read as text.
  if (mode === 'x') child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return Object.assign(child, { output: () => ({ stdout, stderr }) });
}

describe('paramiko with the lease certificate', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let service: Awaited<ReturnType<typeof startHashService>>;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
    service = await startHashService(SIZE);
    const x = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(x, (await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' })).certificate);
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === NAME);
    spawnSsh(sshArgs(x, relay.port, 'xowner', { extra: ['-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${service.port}`] }));
    await online;
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    killAll();
    service.server.close();
    await relay.stop();
    await fc.stop();
  });

  it('paramiko as Y (direct-tcpip) moves 10 MiB each way byte-exactly, reply after EOF included', async () => {
    const y = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(y, (await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: y.privateKey, user: 'yparamiko' })).certificate);
    const p = spawnParamiko('y', relay, 'yparamiko', y, NAME);
    const exit = once(p, 'exit');
    const r = await exchange(Duplex.from({ readable: p.stdout, writable: p.stdin }), SIZE);
    assert.equal(r.echoedHash, r.sentHash, 'X received exactly what paramiko sent');
    assert.equal(r.replyBytes, SIZE);
    assert.equal(r.replyHash, streamHash(SIZE), 'paramiko received exactly what X sent');
    const [code] = await exit;
    assert.equal(code, 0, p.output().stderr);
    const auth = await relay.logger.waitFor((l) => l.msg === 'connection authenticated' && l.fields.user === 'yparamiko');
    assert.equal(auth.fields.kind, 'open');
  });

  it('paramiko as X (remote forward) serves two consecutive 10 MiB transfers each way', async () => {
    const x = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(x, (await mintLease(fc, { grant: { kind: 'expose', exposure: PARAMIKO_X, port: 22 }, clientPublicKey: x.privateKey, user: 'xparamiko' })).certificate);
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === PARAMIKO_X);
    const p = spawnParamiko('x', relay, 'xparamiko', x, PARAMIKO_X, [String(service.port)]);
    await waitForLine(p, /^forwarding$/);
    await online;
    const y = await clientFiles(relay.port, relay.hostKeyLine);
    await writeCert(y, (await mintLease(fc, { grant: { kind: 'open', exposure: PARAMIKO_X }, clientPublicKey: y.privateKey, user: 'yuser' })).certificate);
    const localPort = await freePort();
    const ssh = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${localPort}:${PARAMIKO_X}:22`] }));
    await localForwardReady(ssh);
    for (let i = 1; i <= 2; i++) {
      const r = await exchange(await tcpConnect(localPort), SIZE);
      assert.equal(r.echoedHash, r.sentHash, `transfer ${i}: paramiko X delivered exactly what Y sent`);
      assert.equal(r.replyBytes, SIZE);
      assert.equal(r.replyHash, streamHash(SIZE), `transfer ${i}: Y received exactly what X sent`);
    }
    assert.equal(p.exitCode, null, p.output().stderr);
    const exit = once(p, 'exit');
    p.stdin!.end();
    assert.equal((await exit)[0], 0, p.output().stderr);
    ssh.child.kill();
  });
});
