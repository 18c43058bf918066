import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { LEASE_CERT_EXTENSION } from '../../protocol/lease-claims.js';
import { encodeCertificate, parseCertificate, stringOption, stringOptionValue } from '../../protocol/ssh-cert.js';
import { mintLease, signingKey, startFakeControl, startRelay, type FakeControl, type MintOptions, type StartedRelay } from '../harness/relay.js';
import { clientFiles, exchange, killAll, spawnSsh, sshArgs, startHashService, streamHash, writeCert, type ClientFiles } from './ssh-tools.js';

const NAME = 'hostx-web';

describe('relay refusals with the real OpenSSH client', () => {
  let fc: FakeControl;
  let relay: StartedRelay;
  let service: Awaited<ReturnType<typeof startHashService>>;
  let userSeq = 0;

  before(async () => {
    fc = await startFakeControl();
    relay = await startRelay(fc);
    service = await startHashService(1024);
    const x = await clientFiles(relay.port, relay.hostKeyLine);
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

  /** A Y client with its own user name (so log lines can be matched) and a certificate. */
  async function y(mint: Partial<MintOptions> = {}, certOverride?: (cert: Buffer) => Buffer) {
    const user = mint.user ?? `y${++userSeq}`;
    const files = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'open', exposure: NAME }, clientPublicKey: files.privateKey, ...mint, user });
    await writeCert(files, certOverride ? certOverride(lease.certificate) : lease.certificate);
    return { user, files, lease };
  }

  async function expectRefused(files: ClientFiles, sshUser: string, reason: string, opts: { cert?: false } = {}) {
    const since = relay.logger.lines.length;
    const p = spawnSsh(sshArgs(files, relay.port, sshUser, { cert: opts.cert, extra: ['-W', `${NAME}:22`] }));
    p.child.stdin?.end();
    const code = await p.exited;
    assert.equal(code, 255, p.stderr());
    assert.match(p.stderr(), /Permission denied \(publickey\)/);
    const line = await relay.logger.waitFor((l) => l.msg === 'authentication refused' && l.fields.user === sshUser, 5000, since);
    // Some refusals are logged twice (certificate, then the plain key OpenSSH offers next).
    const reasons = relay.logger.lines.slice(since).filter((l) => l.msg === 'authentication refused' && l.fields.user === sshUser).map((l) => l.fields.reason);
    assert.ok(reasons.includes(reason), `expected ${reason}, got ${reasons.join(',')}`);
    assert.ok(line);
    for (const l of relay.logger.lines.slice(since)) assert.doesNotMatch(JSON.stringify(l), /eyJ/, 'a token leaked into the log');
  }

  it('refuses an expired certificate', async () => {
    const c = await y({ notBefore: new Date(Date.now() - 2 * 3600_000), ttlSeconds: 3600 });
    await expectRefused(c.files, c.user, 'cert_expired');
  });

  it('refuses a certificate from another CA', async () => {
    const c = await y({ keys: { lease: fc.keys.lease, ca: signingKey('rogue-ca') } });
    await expectRefused(c.files, c.user, 'ca_untrusted');
  });

  it('refuses a plain key', async () => {
    const c = await y();
    await expectRefused(c.files, c.user, 'not_certificate', { cert: false });
  });

  it('refuses a tampered lease token inside a validly signed certificate', async () => {
    const c = await y({}, (blob) => {
      const cert = parseCertificate(blob);
      const extensions = cert.extensions.map((e) => {
        if (e.name !== LEASE_CERT_EXTENSION) return e;
        const [h, p, s] = stringOptionValue(e).split('.') as [string, string, string];
        const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
        claims.exposure = 'something-else';
        return stringOption(e.name, `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`);
      });
      return encodeCertificate({ ...cert, extensions }, fc.keys.ca.privateKey);
    });
    await expectRefused(c.files, c.user, 'lease_invalid');
  });

  it('refuses a lease for another node', async () => {
    const c = await y({ nodeId: 'node_elsewhere' });
    await expectRefused(c.files, c.user, 'lease_wrong_node');
  });

  it('refuses a user name that is not among the principals', async () => {
    const c = await y();
    await expectRefused(c.files, 'mallory', 'principal_mismatch');
  });

  it('refuses a revoked lease', async () => {
    const c = await y();
    fc.revoke(c.lease.claims.jti, c.lease.claims.exp);
    await relay.relay.pollRevocations();
    await expectRefused(c.files, c.user, 'lease_revoked');
  });

  it('refuses channels outside the lease: an open lease for another exposure', async () => {
    const c = await y({ grant: { kind: 'open', exposure: 'other-service' } });
    const since = relay.logger.lines.length;
    const p = spawnSsh(sshArgs(c.files, relay.port, c.user, { extra: ['-W', `${NAME}:22`] }));
    p.child.stdin?.end();
    assert.equal(await p.exited, 255);
    // OpenSSH shows the relay's reason code and description (protocol/channel-refusals.ts).
    assert.match(p.stderr(), new RegExp(`open failed: administratively prohibited: not_in_lease: ${NAME}:22 is not in this lease`));
    await relay.logger.waitFor((l) => l.msg === 'request refused' && l.fields.reason === 'not_in_lease', 5000, since);
  });

  it('refuses a command with a reason: the relay opens no sessions (ssh2 alone sent an empty one)', async () => {
    const c = await y();
    const p = spawnSsh([...sshArgs(c.files, relay.port, c.user), 'true']);
    p.child.stdin?.end();
    assert.notEqual(await p.exited, 0);
    assert.match(p.stderr(), /open failed: administratively prohibited: not_offered: the relay runs no shell, command or subsystem/);
  });

  describe('refused requests leave the connection usable (ControlMaster)', () => {
    let ctl: string;
    let user: string;
    let files: ClientFiles;
    before(async () => {
      const c = await y();
      user = c.user;
      files = c.files;
      ctl = join(files.dir, 'ctl');
      const master = spawnSsh(sshArgs(files, relay.port, user, { extra: ['-v', '-M', '-S', ctl, '-N', '-o', 'ControlPersist=no'] }));
      await master.waitStderr(/Entering interactive session/);
    });
    const mux = (extra: string[], cmd: string[] = []) => spawnSsh(['-F', '/dev/null', '-S', ctl, '-o', 'BatchMode=yes', ...extra, 'relay', ...cmd]);

    it('refuses exec', async () => {
      const p = mux([], ['true']);
      assert.notEqual(await p.exited, 0);
      assert.match(p.stderr(), /Session open refused by peer/);
    });

    it('refuses a shell', async () => {
      const p = mux(['-T']);
      p.child.stdin?.end();
      assert.notEqual(await p.exited, 0);
    });

    it('refuses sftp', async () => {
      const p = spawnSsh(['-F', '/dev/null', '-o', `ControlPath=${ctl}`, '-o', 'BatchMode=yes', '-b', '/dev/null', 'relay'], { bin: 'sftp' });
      assert.notEqual(await p.exited, 0);
    });

    it("refuses -L/-W to the relay's own 127.0.0.1:22", async () => {
      const since = relay.logger.lines.length;
      const p = mux(['-W', '127.0.0.1:22']);
      p.child.stdin?.end();
      assert.equal(await p.exited, 255);
      assert.match(p.stderr(), /forwarding request failed/);
      await relay.logger.waitFor((l) => l.msg === 'request refused' && l.fields.destIP === '127.0.0.1' && l.fields.reason === 'not_in_lease', 5000, since);
    });

    it('refuses -L/-W to another host', async () => {
      const since = relay.logger.lines.length;
      const p = mux(['-W', '10.9.8.7:80']);
      p.child.stdin?.end();
      assert.equal(await p.exited, 255);
      await relay.logger.waitFor((l) => l.msg === 'request refused' && l.fields.destIP === '10.9.8.7' && l.fields.reason === 'not_in_lease', 5000, since);
    });

    it('still forwards to the exposure afterwards', async () => {
      const p = mux(['-W', `${NAME}:22`]);
      const r = await exchange(Duplex.from({ readable: p.child.stdout!, writable: p.child.stdin! }), 4096);
      assert.equal(r.echoedHash, r.sentHash);
      assert.equal(r.replyHash, streamHash(1024));
    });
  });

  it('refuses -R for another name and keeps the exposing connection usable', async () => {
    const files = await clientFiles(relay.port, relay.hostKeyLine);
    const lease = await mintLease(fc, { grant: { kind: 'expose', exposure: 'second', port: 22 }, clientPublicKey: files.privateKey, user: 'xsecond' });
    await writeCert(files, lease.certificate);
    const ctl = join(files.dir, 'ctl');
    const master = spawnSsh(sshArgs(files, relay.port, 'xsecond', { extra: ['-v', '-M', '-S', ctl, '-N', '-o', 'ControlPersist=no'] }));
    await master.waitStderr(/Entering interactive session/);
    const bad = spawnSsh(['-F', '/dev/null', '-S', ctl, '-O', 'forward', '-R', `${NAME}:22:127.0.0.1:${service.port}`, 'relay']);
    assert.notEqual(await bad.exited, 0, bad.stderr());
    const bad2 = spawnSsh(['-F', '/dev/null', '-S', ctl, '-O', 'forward', '-R', `second:2222:127.0.0.1:${service.port}`, 'relay']);
    assert.notEqual(await bad2.exited, 0, bad2.stderr());
    const online = relay.logger.waitFor((l) => l.msg === 'exposure online' && l.fields.exposure === 'second');
    const good = spawnSsh(['-F', '/dev/null', '-S', ctl, '-O', 'forward', '-R', `second:22:127.0.0.1:${service.port}`, 'relay']);
    assert.equal(await good.exited, 0, good.stderr());
    await online;
  });
});
