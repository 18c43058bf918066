/**
 * The CLI's way of authenticating (ssh2 client + cli/ssh/ssh2-cert-auth.ts) is standard SSH: a real
 * OpenSSH sshd that only trusts a CA (TrustedUserCAKeys, no authorized_keys) accepts it, and
 * refuses a certificate that was tampered with (which ssh2, unlike OpenSSH's client, sends as is,
 * so here the refusal is sshd's own). Needs root and /usr/sbin/sshd.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { userInfo } from 'node:os';
import { Client } from 'ssh2';
import { encodeCertificate, flagOption, stringOption, type CertificateTemplate } from '../../protocol/ssh-cert.js';
import { formatPublicKeyLine, parseKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';
import { certIdentity } from '../../cli/ssh/ssh2-cert-auth.js';
import { startSshd, type Sshd } from '../harness/sshd.js';

const user = userInfo().username;

function connectAndExec(port: number, hostKeyBlob: Buffer, key: KeyObject, cert: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    client
      .on('ready', () => {
        client.exec('echo ok', (err, stream) => {
          if (err) return reject(err);
          let out = '';
          stream.on('data', (d: Buffer) => (out += d.toString()));
          stream.on('close', () => {
            client.end();
            resolve(out.trim());
          });
        });
      })
      .on('error', reject)
      .connect({
        host: '127.0.0.1',
        port,
        username: user,
        hostVerifier: (k: Buffer) => k.equals(hostKeyBlob),
        authHandler: [{ type: 'publickey', username: user, key: certIdentity(key, cert) }] as never,
        readyTimeout: 10_000,
      });
  });
}

describe('ssh2 client with an OpenSSH certificate against real sshd', () => {
  const ca = generateKeyPairSync('ed25519');
  const otherCa = generateKeyPairSync('ed25519');
  let sshd: Sshd;
  let hostKeyBlob: Buffer;
  const now = BigInt(Math.floor(Date.now() / 1000));
  const client = generateKeyPairSync('ed25519').privateKey;
  const template: CertificateTemplate = {
    publicKey: rawPublicKey(client),
    serial: BigInt(`0x${randomBytes(8).toString('hex')}`),
    type: 'user',
    keyId: 'lse_cli_interop',
    principals: [user],
    validAfter: now - 60n,
    validBefore: now + 600n,
    extensions: [stringOption('lease@tunnel', 'header.payload.signature'), flagOption('permit-port-forwarding')],
  };

  before(async () => {
    sshd = await startSshd({ trustedUserCaKeys: [formatPublicKeyLine(rawPublicKey(ca.publicKey), 'tunnel-ca')] });
    hostKeyBlob = parseKeyLine(sshd.hostKeyLine).blob;
  });
  after(async () => sshd?.stop());

  it('logs in with key + certificate', async () => {
    const cert = encodeCertificate(template, ca.privateKey);
    assert.equal(await connectAndExec(sshd.port, hostKeyBlob, client, cert), 'ok');
    await sshd.waitForLog(/Accepted publickey for \S+ from .* ED25519-CERT .* ID lse_cli_interop/);
  });

  it('is refused with a certificate from another CA', async () => {
    const cert = encodeCertificate(template, otherCa.privateKey);
    await assert.rejects(connectAndExec(sshd.port, hostKeyBlob, client, cert), /authentication methods failed/);
  });

  it('is refused with a tampered certificate (one byte of the lease changed)', async () => {
    const cert = Buffer.from(encodeCertificate(template, ca.privateKey));
    const at = cert.indexOf(Buffer.from('header.payload'));
    assert.ok(at > 0);
    cert[at] = cert[at]! ^ 0x01;
    const from = sshd.log().length;
    await assert.rejects(connectAndExec(sshd.port, hostKeyBlob, client, cert), /authentication methods failed/);
    await sshd.waitForLog(/signature|invalid|certificate/i, from);
  });

  it('is refused when the private key does not match the certificate', async () => {
    const cert = encodeCertificate(template, ca.privateKey);
    const wrong = generateKeyPairSync('ed25519').privateKey;
    await assert.rejects(connectAndExec(sshd.port, hostKeyBlob, wrong, cert), /authentication methods failed/);
  });
});
