/**
 * Certificates from protocol/ssh-cert are standard: a real OpenSSH sshd that trusts the CA
 * (TrustedUserCAKeys, no authorized_keys, no passwords) lets the real ssh client in with them,
 * and refuses each kind of bad certificate. Needs root, /usr/sbin/sshd and ssh.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import {
  encodeCertificate,
  flagOption,
  formatCertificateLine,
  stringOption,
  type CertificateTemplate,
} from '../../protocol/ssh-cert.js';
import {
  fingerprintSha256,
  formatOpenSshPrivateKey,
  parseOpenSshPrivateKey,
  publicKeyBlob,
  rawPublicKey,
} from '../../protocol/ssh-key.js';
import { readFixture } from '../../protocol/fixtures/fixtures.js';
import { runSsh, startSshd, type Sshd, type SshResult } from '../harness/sshd.js';

const ca = parseOpenSshPrivateKey(readFixture('ca'));
const LEASE = 'eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiJsZWFzZS1pbnRlcm9wIiwia2luZCI6Im9wZW4ifQ.c2lnbmF0dXJlLW5vdC1yZWFs';
const user = userInfo().username;

describe('real sshd with TrustedUserCAKeys and certificates from encodeCertificate', () => {
  let sshd: Sshd | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'ssh-cert-interop-'));
  const keyFile = join(dir, 'id_lease');
  const knownHosts = join(dir, 'known_hosts');
  const client = generateKeyPairSync('ed25519').privateKey;
  const now = BigInt(Math.floor(Date.now() / 1000));
  const base: CertificateTemplate = {
    publicKey: rawPublicKey(client),
    serial: BigInt(`0x${randomBytes(8).toString('hex')}`),
    type: 'user',
    keyId: 'lease-interop',
    principals: [user],
    validAfter: now - 60n,
    validBefore: now + 600n,
    extensions: [flagOption('permit-port-forwarding'), stringOption('lease@tunnel', LEASE)],
  };

  /** Writes a certificate file whose name ssh would not pick up implicitly for keyFile. */
  function certFile(name: string, blob: Buffer): string {
    const path = join(dir, `${name}.cert`);
    writeFileSync(path, `${formatCertificateLine(blob, name)}\n`);
    return path;
  }

  function issue(name: string, over: Partial<CertificateTemplate> = {}, signer: KeyObject = ca.privateKey): string {
    return certFile(name, encodeCertificate({ ...base, ...over }, signer));
  }

  async function login(certificateFile: string): Promise<SshResult> {
    assert.ok(sshd);
    return runSsh({ port: sshd.port, user, identityFile: keyFile, certificateFile, knownHostsFile: knownHosts });
  }

  function explain(r: SshResult): string {
    return `ssh exit ${r.code}\nstderr: ${r.stderr}\nsshd log:\n${sshd?.log() ?? ''}`;
  }

  /**
   * Asserts that ssh was refused, and returns what sshd logged for the attempt (up to the
   * line that closes it), so each case can show it was refused for its own reason.
   */
  async function assertRefused(certificateFile: string): Promise<string> {
    assert.ok(sshd);
    const from = sshd.log().length;
    const r = await login(certificateFile);
    assert.equal(r.code, 255, explain(r));
    assert.equal(r.stdout, '', explain(r));
    assert.match(r.stderr, /Permission denied \(publickey\)/, explain(r));
    const attempt = await sshd.waitForLog(new RegExp(`Connection closed by authenticating user ${user} `), from);
    assert.doesNotMatch(attempt, /Accepted publickey/);
    return attempt;
  }

  before(async () => {
    writeFileSync(keyFile, formatOpenSshPrivateKey(client, 'lease-interop'), { mode: 0o600 });
    sshd = await startSshd({ trustedUserCaKeys: [readFixture('ca.pub')] });
    writeFileSync(knownHosts, `${sshd.knownHostsLine()}\n`);
  });

  after(async () => {
    await sshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('logs in with the key and a valid certificate', async () => {
    assert.ok(sshd);
    const from = sshd.log().length;
    const r = await login(issue('valid'));
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.stdout, 'ok\n');
    // sshd names the certificate it accepted: proof that the certificate, not a bare key, was used.
    await sshd.waitForLog(new RegExp(`Accepted publickey for ${user} .* ED25519-CERT .* ID lease-interop \\(serial ${base.serial}\\)`), from);
  });

  it('refuses an expired certificate', async () => {
    const log = await assertRefused(issue('expired', { validAfter: now - 7200n, validBefore: now - 3600n }));
    assert.match(log, /Certificate invalid: expired/);
  });

  it('refuses a certificate that is not yet valid', async () => {
    const log = await assertRefused(issue('future', { validAfter: now + 3600n, validBefore: now + 7200n }));
    assert.match(log, /Certificate invalid: not yet valid/);
  });

  it('refuses a certificate signed by another CA', async () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    const log = await assertRefused(issue('other-ca', {}, other));
    // The certificate reached sshd and was refused there: its CA is not in TrustedUserCAKeys.
    assert.ok(log.includes(`ID lease-interop (serial ${base.serial}) CA ED25519 ${fingerprintSha256(publicKeyBlob(other))}`), log);
  });

  it('refuses a certificate whose lease extension was changed by one byte', async () => {
    const blob = encodeCertificate(base, ca.privateKey);
    const at = blob.indexOf(Buffer.from(LEASE)) + 30;
    assert.ok(at > 30);
    blob[at] = blob[at] === 0x41 ? 0x42 : 0x41;
    const log = await assertRefused(certFile('tampered', blob));
    // OpenSSH verifies the CA signature whenever it decodes a certificate, so the real client
    // drops the tampered certificate itself and offers only the bare key, which has no grant.
    assert.doesNotMatch(log, /ED25519-CERT/);
    assert.match(log, /Failed publickey for \S+ from .* ED25519 SHA256:/);
  });

  it('refuses a certificate for another principal', async () => {
    const log = await assertRefused(issue('wrong-principal', { principals: ['alice', 'bob'] }));
    assert.match(log, /Certificate invalid: name is not a listed principal/);
  });

  it('still logs in afterwards (the refusals were not the daemon breaking)', async () => {
    const r = await login(issue('valid-again', { keyId: 'lease-interop-2' }));
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.stdout, 'ok\n');
  });
});
