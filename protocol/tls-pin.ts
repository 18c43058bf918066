import { createHash, X509Certificate } from 'node:crypto';

/**
 * The pin of a certificate (PEM text or DER bytes): `sha256:` and the lowercase hex SHA-256 of
 * its DER SubjectPublicKeyInfo (protocol/tls-trust.ts explains the format). In a file of its own
 * so the control plane, which only prints pins, does not load undici (tls-trust.ts's HTTP
 * connector) at every start: about 0.4 s of CPU of a first start (issue 11).
 */
export function certificatePin(cert: string | Buffer): string {
  const spki = new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}
