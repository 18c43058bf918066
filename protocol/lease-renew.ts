import { CERT_LIMITS } from './ssh-cert.js';
import { SshReader, SshWriter } from './ssh-wire.js';

/**
 * `lease-renew@tunnel`: the SSH global request by which a connected client hands the relay a
 * fresh certificate for the same key (in-band renewal, DESIGN "Leases and certificates"). Its
 * payload is one SSH string, the certificate blob; the relay answers SUCCESS or FAILURE.
 */
export const LEASE_RENEW_REQUEST = 'lease-renew@tunnel';

export function encodeLeaseRenew(certificateBlob: Buffer): Buffer {
  return new SshWriter().string(certificateBlob).toBuffer();
}

/** The certificate blob of a renewal payload; throws SshWireError when it is not exactly one bounded string. */
export function decodeLeaseRenew(payload: Buffer): Buffer {
  const r = new SshReader(payload);
  const blob = r.string(CERT_LIMITS.blob);
  r.end();
  return blob;
}
