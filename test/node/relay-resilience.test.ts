import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { mintLease, signingKey, startFakeControl, startRelay, type FakeControl, type StartedRelay } from '../harness/relay.js';
import { clientFiles, exchange, killAll, spawnSsh, sshArgs, startHashService, within, writeCert, type ClientFiles } from './ssh-tools.js';

const NAME = 'hostx-api';

describe('vanished peers, takeover and an unreachable control plane', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let service: Awaited<ReturnType<typeof startHashService>>;
  let x: ClientFiles;

  before(async () => {
    fc = await startFakeControl();
    // Short keepalive so a frozen peer is noticed quickly: 1 s x 2 misses.
    relay = await startRelay(fc, { args: ['--keepalive-interval', '1s', '--keepalive-count-max', '2'] });
    service = await startHashService(256);
    x = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: x.privateKey, user: 'xowner' });
    await writeCert(x, lease.certificate);
  });

  after(async () => {
    killAll();
    service.server.close();
    await relay.stop();
    await fc.stop();
  });

  function exposeX() {
    const since = relay.logger.lines.length;
    const p = spawnSsh(sshArgs(x, relay.port, 'xowner', { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${NAME}:22:127.0.0.1:${service.port}`] }));
    const bound = relay.logger.waitFor((l) => l.msg === 'exposure bound' && l.fields.exposure === NAME, 20_000, since);
    return { p, bound };
  }

  async function yWorks(): Promise<void> {
    const y = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: y.privateKey, user: 'yuser' });
    await writeCert(y, lease.certificate);
    const p = spawnSsh(sshArgs(y, relay.port, 'yuser', { extra: ['-W', `${NAME}:22`] }));
    const r = await exchange(Duplex.from({ readable: p.child.stdout!, writable: p.child.stdin! }), 1000);
    assert.equal(r.echoedHash, r.sentHash);
  }

  for (const signal of ['SIGKILL', 'SIGSTOP'] as const) {
    it(`frees the exposure within 30 s when X gets ${signal}, and a reconnecting X takes over`, async () => {
      const first = exposeX();
      await first.bound;
      await yWorks();
      const since = relay.logger.lines.length;
      const offline = relay.logger.waitFor((l) => l.msg === 'exposure offline' && l.fields.exposure === NAME, 30_000, since);
      first.p.child.kill(signal);
      await within(offline, 30_000, 'exposure freed');
      const second = exposeX();
      await second.bound;
      await second.p.waitStderr(/remote forward success/);
      await yWorks();
      second.p.child.kill('SIGKILL');
      await relay.logger.waitFor((l) => l.msg === 'exposure offline' && l.fields.exposure === NAME, 30_000, relay.logger.lines.length - 1).catch(() => {});
    });
  }

  it('make before break: a second X takes new channels while the first keeps its own', async () => {
    const first = exposeX();
    await first.bound;
    const second = exposeX();
    await second.bound;
    const sinceBridge = relay.logger.lines.length;
    await yWorks();
    const bridged = await relay.logger.waitFor((l) => l.msg === 'channel bridged', 5000, sinceBridge);
    const secondSession = relay.logger.lines.filter((l) => l.msg === 'exposure bound').at(-1)?.fields.sessionId;
    assert.equal(bridged.fields.to, secondSession, 'the newest connection takes new channels');
    second.p.child.kill('SIGKILL');
    await relay.logger.waitFor((l) => l.msg === 'connection closed' && l.fields.sessionId === secondSession, 10_000);
    await yWorks(); // falls back to the first X
    first.p.child.kill('SIGKILL');
  });

  it('keeps verifying from the cached JWKS while the control plane is down', async () => {
    await fc.stop();
    await relay.stop();
    // A fresh relay process on the same data dir: it must start from the disk copy.
    relay = await startRelay(fc, { dataDir: relay.dataDir, args: ['--keepalive-interval', '1s', '--keepalive-count-max', '2'] });
    assert.equal((relay.relay.health().jwks as { source: string }).source, 'disk');
    x = await clientFiles(relay.port, relay.hostKeyLine).then(async (f) => {
      const lease = await mintLease(fc, { grant: { kind: 'expose', exposure: NAME, port: 22 }, clientPublicKey: f.privateKey, user: 'xowner' });
      await writeCert(f, lease.certificate);
      return f;
    });
    const ok = exposeX();
    await ok.bound;

    const bad = await clientFiles(relay.port, relay.hostKeyLine);
    const rogue = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: bad.privateKey, user: 'ybad', keys: { lease: fc.keys.lease, ca: signingKey('rogue') } });
    await writeCert(bad, rogue.certificate);
    const p = spawnSsh(sshArgs(bad, relay.port, 'ybad', { extra: ['-W', `${NAME}:22`] }));
    p.child.stdin?.end();
    assert.equal(await p.exited, 255);
    await relay.logger.waitFor((l) => l.msg === 'authentication refused' && l.fields.reason === 'ca_untrusted');
  });
});
