/**
 * Certificates issued by the control plane's API are standard OpenSSH user certificates:
 * `ssh-keygen -L` reads them as DESIGN.md specifies, and a real sshd whose TrustedUserCAKeys is
 * the CA key published in /.well-known/jwks.json lets the real ssh client in with them, and
 * refuses expired and tampered ones.
 *
 * The main issuer is the real `tunnel-control` binary (production keys, system clock). Expired
 * certificates come from an in-process app whose ManualClock sits two hours in the past, so no
 * test waits for time to pass; sshd trusts that app's published CA too, so it refuses them for
 * expiry and not for an unknown CA.
 *
 * The sshd harness logs in as the current OS user (root: sshd needs it) with no
 * AuthorizedPrincipalsFile, so a certificate's principal must be that user name: the test
 * creates the Tunnel user "root" and requests leases as it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { JwksSchema, jwkPublicKeyBytes } from '../../protocol/jwks.js';
import {
  encodeCertificate,
  formatCertificateLine,
  parseCertificate,
  parseCertificateLine,
  stringOption,
  stringOptionValue,
} from '../../protocol/ssh-cert.js';
import {
  encodePublicKeyBlob,
  fingerprintSha256,
  formatOpenSshPrivateKey,
  formatPublicKeyLine,
  publicKeyBlob,
  rawPublicKey,
} from '../../protocol/ssh-key.js';
import { createTestApp, type TestApp } from '../../control/testing/test-app.js';
import { ManualClock } from '../../shared/clock.js';
import {
  enrollOnlineNode,
  expectStatus,
  httpCaller,
  nodeHeartbeat,
  passwordLogin,
  startControlProcess,
  type ApiCall,
  type ControlProcess,
  type EnrolledNode,
} from '../harness/control.js';
import { runSsh, startSshd, type Sshd, type SshResult } from '../harness/sshd.js';

const execFileP = promisify(execFile);
const LOCAL_USER = userInfo().username;
const PASSWORD = 'correct horse battery staple';
const EXPOSURE = 'hostx-ssh';

/** The published SSH CA key as an `ssh-ed25519 AAAA...` line, and its fingerprint. */
async function publishedCa(call: ApiCall): Promise<{ line: string; fingerprint: string }> {
  const jwks = JwksSchema.parse(expectStatus(await call('GET', '/.well-known/jwks.json'), 200, 'jwks').body);
  const ca = jwks.keys.filter((k) => k.use === 'ssh-ca');
  assert.equal(ca.length, 1, 'one SSH CA key published');
  const raw = jwkPublicKeyBytes(ca[0]!);
  return { line: formatPublicKeyLine(raw, `tunnel-ca ${ca[0]!.kid}`), fingerprint: fingerprintSha256(encodePublicKeyBlob(raw)) };
}

interface Issued {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the LeaseIssued JSON
  body: any;
  client: KeyObject;
}

/** An expose lease for a fresh client key, as the CLI would request it. */
/** The node of each issuer, kept online as a relay would: one heartbeat before each lease (a slow run outlasts the online window). */
const issuerNodes = new Map<ApiCall, EnrolledNode>();

async function exposeLease(call: ApiCall, token: string, opts: { ttl?: number; exposure?: string } = {}): Promise<Issued> {
  const node = issuerNodes.get(call);
  if (node) await nodeHeartbeat(call, node);
  const client = generateKeyPairSync('ed25519').privateKey;
  const r = await call('POST', '/v1/leases', {
    token,
    body: {
      kind: 'expose',
      exposure: opts.exposure ?? EXPOSURE,
      port: 22,
      public_key: formatPublicKeyLine(rawPublicKey(client), 'lease-key'),
      ...(opts.ttl ? { ttl_seconds: opts.ttl } : {}),
    },
  });
  expectStatus(r, 201, 'issue lease');
  return { body: r.body, client };
}

/** Sets up a control plane API for leases: user LOCAL_USER, an online node, an exposure. */
async function prepareIssuer(call: ApiCall, adminToken: string): Promise<{ userToken: string; node: EnrolledNode }> {
  expectStatus(await call('POST', '/v1/users', { token: adminToken, body: { name: LOCAL_USER, password: PASSWORD } }), 201, 'create user');
  const userToken = await passwordLogin(call, LOCAL_USER, PASSWORD);
  const node = await enrollOnlineNode(call, adminToken);
  expectStatus(await call('PUT', `/v1/exposures/${EXPOSURE}`, { token: userToken, body: { allow: [] } }), 201, 'create exposure');
  issuerNodes.set(call, node);
  return { userToken, node };
}

describe('certificates from POST /v1/leases against real OpenSSH', { skip: process.getuid?.() !== 0 && 'needs root for sshd' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tunnel-openssh-certs-'));
  const knownHosts = join(dir, 'known_hosts');
  let control: ControlProcess | undefined;
  let past: TestApp | undefined;
  let sshd: Sshd | undefined;
  let call: ApiCall;
  let userToken: string;
  let ca: { line: string; fingerprint: string };
  let pastCa: { line: string; fingerprint: string };
  let pastUserToken: string;
  let pastNode: EnrolledNode;

  /** Writes the client's private key and the certificate line; returns both paths. */
  function files(name: string, client: KeyObject, certLine: string): { key: string; cert: string } {
    const key = join(dir, `${name}.key`);
    const cert = join(dir, `${name}.cert`);
    writeFileSync(key, formatOpenSshPrivateKey(client, name), { mode: 0o600 });
    writeFileSync(cert, `${certLine}\n`);
    return { key, cert };
  }

  async function login(f: { key: string; cert: string }): Promise<SshResult> {
    assert.ok(sshd);
    return runSsh({ port: sshd.port, user: LOCAL_USER, identityFile: f.key, certificateFile: f.cert, knownHostsFile: knownHosts });
  }

  function explain(r: SshResult): string {
    return `ssh exit ${r.code}\nstderr: ${r.stderr}\nsshd log:\n${sshd?.log() ?? ''}`;
  }

  async function assertAccepted(f: { key: string; cert: string }, leaseId: string, serial: string, caFingerprint: string): Promise<void> {
    assert.ok(sshd);
    const from = sshd.log().length;
    const r = await login(f);
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.stdout, 'ok\n');
    // sshd names the certificate and the CA it accepted: the certificate, not a bare key, got in.
    const log = await sshd.waitForLog(new RegExp(`Accepted publickey for ${LOCAL_USER} `), from);
    const escaped = caFingerprint.replace(/[+/]/g, '\\$&');
    assert.match(log, new RegExp(`ED25519-CERT SHA256:\\S+ ID ${leaseId} \\(serial ${serial}\\) CA ED25519 ${escaped}`));
  }

  /** Asserts that ssh was refused and returns what sshd logged for the attempt. */
  async function assertRefused(f: { key: string; cert: string }): Promise<string> {
    assert.ok(sshd);
    const from = sshd.log().length;
    const r = await login(f);
    assert.equal(r.code, 255, explain(r));
    assert.equal(r.stdout, '', explain(r));
    assert.match(r.stderr, /Permission denied \(publickey\)/, explain(r));
    const attempt = await sshd.waitForLog(new RegExp(`Connection closed by authenticating user ${LOCAL_USER} `), from);
    assert.doesNotMatch(attempt, /Accepted publickey/);
    return attempt;
  }

  before(async () => {
    assert.match(LOCAL_USER, /^[a-z][a-z0-9._-]{0,63}$/, 'the local user name must be a valid Tunnel user name');
    control = await startControlProcess();
    call = httpCaller(control.url);
    expectStatus(
      await call('POST', '/v1/setup', { body: { setup_code: control.setupCode, name: 'admin', password: PASSWORD } }),
      201,
      'setup',
    );
    const adminToken = await passwordLogin(call, 'admin', PASSWORD);
    ({ userToken } = await prepareIssuer(call, adminToken));
    ca = await publishedCa(call);

    past = await createTestApp({ clock: new ManualClock(Date.now() - 2 * 3600_000) });
    const admin = await past.user('admin', 'admin');
    ({ userToken: pastUserToken, node: pastNode } = await prepareIssuer(past.call, admin.token));
    pastCa = await publishedCa(past.call);
    assert.notEqual(pastCa.fingerprint, ca.fingerprint);

    sshd = await startSshd({ trustedUserCaKeys: [ca.line, pastCa.line] });
    writeFileSync(knownHosts, `${sshd.knownHostsLine()}\n`);
  });

  after(async () => {
    await sshd?.stop();
    await control?.stop();
    control?.cleanup();
    await past?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ssh-keygen -L shows key id = lease id, principals = [user], validity nbf-60..exp, the lease extensions', async () => {
    const { body, client } = await exposeLease(call, userToken);
    const f = files('keygen', client, body.certificate);
    const { stdout } = await execFileP('ssh-keygen', ['-L', '-f', f.cert], { env: { ...process.env, TZ: 'UTC' } });
    const field = (name: string): string => {
      const m = new RegExp(`^\\s+${name}: (.*)$`, 'm').exec(stdout);
      assert.ok(m, `no "${name}" in:\n${stdout}`);
      return m[1]!.trim();
    };
    /** The indented lines under a heading such as "Principals:". */
    const list = (name: string): string[] => {
      const lines = stdout.split('\n');
      const at = lines.findIndex((l) => new RegExp(`^\\s+${name}:`).test(l));
      assert.ok(at >= 0, `no "${name}" in:\n${stdout}`);
      const out: string[] = [];
      for (const l of lines.slice(at + 1)) {
        if (!/^\s{16}\S/.test(l)) break;
        out.push(l.trim());
      }
      return out;
    };

    assert.equal(field('Type'), 'ssh-ed25519-cert-v01@openssh.com user certificate');
    assert.equal(field('Key ID'), `"${body.lease.id}"`);
    assert.equal(field('Serial'), body.lease.serial);
    assert.equal(field('Public key'), `ED25519-CERT ${body.lease.ssh_key}`);
    assert.equal(field('Signing CA'), `ED25519 ${ca.fingerprint} (using ssh-ed25519)`);
    assert.deepEqual(list('Principals'), [LOCAL_USER]);
    assert.equal(field('Critical Options'), '(none)');

    const nbf = Date.parse(body.lease.not_before);
    const exp = Date.parse(body.lease.expires_at);
    assert.equal(exp - nbf, 3600_000, 'expose leases default to one hour');
    const stamp = (ms: number): string => new Date(ms).toISOString().slice(0, 19);
    assert.equal(field('Valid'), `from ${stamp(nbf - 60_000)} to ${stamp(exp)}`);

    const ext = list('Extensions');
    assert.equal(ext.length, 2, stdout);
    assert.equal(ext[1], 'permit-port-forwarding');
    // ssh-keygen does not know lease@tunnel and prints its data (an SSH string) in hex.
    const m = /^lease@tunnel UNKNOWN OPTION: ([0-9a-f]+) \(len \d+\)$/.exec(ext[0]!);
    assert.ok(m, ext[0]);
    const data = Buffer.from(m[1]!, 'hex');
    assert.equal(data.readUInt32BE(0), data.length - 4);
    assert.equal(data.subarray(4).toString(), body.token, 'the extension carries the lease token');
  });

  it('real ssh logs in to a real sshd with the key and the certificate', async () => {
    const { body, client } = await exposeLease(call, userToken);
    // The certificate certifies exactly the key the client sent.
    assert.equal(body.lease.ssh_key, fingerprintSha256(publicKeyBlob(client)));
    await assertAccepted(files('valid', client, body.certificate), body.lease.id, body.lease.serial, ca.fingerprint);
  });

  it('refuses an expired certificate (issued by an app whose clock is two hours back)', async () => {
    const { body, client } = await exposeLease(past!.call, pastUserToken, { ttl: 60 });
    assert.ok(Date.parse(body.lease.expires_at) < Date.now() - 3600_000, body.lease.expires_at);
    const log = await assertRefused(files('expired', client, body.certificate));
    assert.match(log, /Certificate invalid: expired/);
  });

  it('the same app with its clock at now issues a certificate that gets in (only expiry differed)', async () => {
    past!.clock.set(new Date());
    await nodeHeartbeat(past!.call, pastNode);
    const token = await passwordLogin(past!.call, LOCAL_USER, PASSWORD);
    const { body, client } = await exposeLease(past!.call, token, { ttl: 60 });
    await assertAccepted(files('past-app-now', client, body.certificate), body.lease.id, body.lease.serial, pastCa.fingerprint);
  });

  it('refuses a certificate whose lease extension was changed (ssh drops it client-side)', async () => {
    const { body, client } = await exposeLease(call, userToken);
    const blob = parseCertificateLine(body.certificate);
    const at = blob.indexOf(Buffer.from(body.token)) + 40;
    assert.ok(at > 40);
    blob[at] = blob[at] === 0x41 ? 0x42 : 0x41;
    const log = await assertRefused(files('tampered', client, formatCertificateLine(blob, 'tampered')));
    // OpenSSH checks the CA signature when it loads a certificate, so the real client drops the
    // tampered one and offers only the bare key, which sshd has no grant for.
    assert.doesNotMatch(log, /ED25519-CERT/);
    assert.match(log, /Failed publickey for \S+ from .* ED25519 SHA256:/);
  });

  it('refuses a certificate with a changed lease re-signed by another CA (sshd refuses it)', async () => {
    const { body, client } = await exposeLease(call, userToken);
    const cert = parseCertificate(parseCertificateLine(body.certificate));
    // Widen the grant in the token's payload (its own signature no longer matches either).
    const [h, payload, sig] = (body.token as string).split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, exposure: 'someone-else' })).toString('base64url')}.${sig}`;
    const extensions = cert.extensions.map((e) => (e.name === 'lease@tunnel' ? stringOption(e.name, forged) : e));
    assert.equal(stringOptionValue(extensions.find((e) => e.name === 'lease@tunnel')!), forged);
    const otherCa = generateKeyPairSync('ed25519').privateKey;
    const resigned = encodeCertificate({ ...cert, extensions }, otherCa);
    const log = await assertRefused(files('resigned', client, formatCertificateLine(resigned, 'resigned')));
    // The certificate reached sshd (the client could verify its signature) and sshd refused its CA.
    const otherFp = fingerprintSha256(publicKeyBlob(otherCa));
    assert.ok(log.includes(`ID ${body.lease.id} (serial ${body.lease.serial}) CA ED25519 ${otherFp}`), log);
  });

  it('refuses a certificate of another Tunnel user (principal is not the login name)', async () => {
    const adminToken = await passwordLogin(call, 'admin', PASSWORD);
    expectStatus(await call('PUT', '/v1/exposures/admin-box', { token: adminToken, body: { allow: [] } }), 201, 'exposure');
    const { body, client } = await exposeLease(call, adminToken, { exposure: 'admin-box' });
    const log = await assertRefused(files('other-user', client, body.certificate));
    assert.match(log, /Certificate invalid: name is not a listed principal/);
  });

  it('still logs in afterwards (the refusals were not sshd breaking)', async () => {
    const { body, client } = await exposeLease(call, userToken);
    await assertAccepted(files('valid-again', client, body.certificate), body.lease.id, body.lease.serial, ca.fingerprint);
  });
});
