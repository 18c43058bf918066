import { isIP } from 'node:net';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { certificatePin } from './tls-pin.js';
import { FileKindRefusedError, FileTooLargeError, readFileBoundedSync } from '../shared/read-file-bounded.js';

/**
 * How the relay and the CLI decide to trust the control plane: the system CAs (Node's bundled
 * store plus NODE_EXTRA_CA_CERTS), a CA file, or a pin. Shared so both check the same way.
 *
 * The pin is `sha256:` followed by the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of
 * the server's (leaf) certificate, the format of Teleport's `--ca-pin`. It names the key, so it
 * survives renewing the certificate with the same key; `tunnel-control` prints it at start.
 * With a pin the chain and name are not checked (a self-signed certificate is the common case):
 * only a server holding that private key completes the handshake.
 *
 * This file holds the policy only, with no HTTP client: the relay speaks to the control plane with
 * node:https (protocol/tls-trust-https.ts), the CLI with undici (protocol/tls-trust-undici.ts), and
 * both build their connections from `trustTls` and `checkPeerPin` here.
 */

export const PIN_PATTERN = /^sha256:[0-9a-f]{64}$/;

export class TrustError extends Error {
  override readonly name = 'TrustError';
  constructor(
    readonly code: 'TLS_PIN_INVALID' | 'TLS_PIN_MISMATCH' | 'TLS_CA_FILE_UNREADABLE' | 'INSECURE_HTTP_REFUSED' | 'TLS_TRUST_CONFLICT',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export { certificatePin };

/** Validates a pin given by an operator (`sha256:` and 64 hex digits, any case). */
export function parsePin(text: string): string {
  const pin = text.trim().toLowerCase();
  if (!PIN_PATTERN.test(pin)) {
    throw new TrustError('TLS_PIN_INVALID', `the pin must be sha256: followed by 64 hex digits (as tunnel-control prints it), got "${text.slice(0, 80)}"`);
  }
  return pin;
}

/** localhost, 127.0.0.0/8 and ::1 (also as an IPv4-mapped address). */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h) || h === '0:0:0:0:0:0:0:1';
  return false;
}

export interface TrustSettings {
  /** A PEM file of CA certificates that replaces the system CAs. */
  caFile?: string | undefined;
  /** A certificate pin (see above); replaces CA verification. */
  caPin?: string | undefined;
  /** Allow plain http:// to a non-loopback host (and warn loudly). */
  insecureHttp?: boolean | undefined;
}

/**
 * Checks a control plane URL before anything connects to it: https, or http to loopback, or http
 * elsewhere only with `insecureHttp`. Returns a warning to print when the URL is insecure.
 */
export function checkServerUrl(url: string, trust: TrustSettings, flag = '--insecure-http'): { warning?: string } {
  const u = new URL(url);
  if (u.protocol === 'https:') return {};
  if (u.protocol !== 'http:') throw new TrustError('INSECURE_HTTP_REFUSED', `${url} must be an https:// URL`);
  if (isLoopbackHost(u.hostname)) return {};
  if (!trust.insecureHttp) {
    throw new TrustError(
      'INSECURE_HTTP_REFUSED',
      `refusing plain http:// to ${u.host}: passwords, tokens and keys would cross the network unencrypted; use https:// (tunnel-control --tls-cert/--tls-key or --tls self-signed), or pass ${flag} to accept the risk`,
    );
  }
  return {
    warning: `WARNING: ${flag}: talking to ${u.origin} over plain HTTP; anyone on the path can read and change passwords, tokens and keys`,
  };
}

/** The pin of the certificate a TLS socket was shown, or undefined when there was none. */
export function peerPin(socket: TLSSocket): string | undefined {
  const raw = socket.getPeerCertificate(false)?.raw;
  return raw && raw.length > 0 ? certificatePin(raw) : undefined;
}

/**
 * How to open a TLS connection for these trust settings: Node's TLS options (the system CAs when
 * neither a CA file nor a pin is set, the CA file's certificates instead of them, or no chain
 * check with a pin), and the pin the caller must check with `checkPeerPin` once the handshake is
 * done and before it writes any byte. Sessions are never resumed with a pin, so every connection
 * shows its certificate. Throws TrustError for a bad pin, an unreadable CA file, or both given.
 */
/** The largest CA file read (a whole system bundle is about 220 KB): /dev/zero is refused, not read until memory runs out. */
const MAX_CA_FILE_BYTES = 4 * 1024 * 1024;

export function trustTls(trust: TrustSettings): { tls: ConnectionOptions; pin?: string } {
  if (trust.caFile && trust.caPin) throw new TrustError('TLS_TRUST_CONFLICT', 'give either a CA file or a pin, not both');
  if (trust.caPin) return { tls: { rejectUnauthorized: false }, pin: parsePin(trust.caPin) };
  if (trust.caFile) {
    try {
      return { tls: { ca: readFileBoundedSync(trust.caFile, MAX_CA_FILE_BYTES) } };
    } catch (err) {
      throw new TrustError('TLS_CA_FILE_UNREADABLE', `cannot read the CA file ${trust.caFile} (${caFileProblem(err)})`, { cause: err });
    }
  }
  return { tls: {} };
}

/**
 * Why a CA file could not be read, for TLS_CA_FILE_UNREADABLE. A pipe (`--ca-file <(cmd)`) is
 * refused, not waited for: the file is read synchronously whenever a client is built, and the
 * CLI stores its path at login and reads it again in every later command.
 */
function caFileProblem(err: unknown): string {
  if (err instanceof FileTooLargeError) return 'larger than 4 MiB';
  if (err instanceof FileKindRefusedError) return `${err.kindText}, not a regular file: save the certificates to a file and give its path`;
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

/**
 * Undefined when the server of this (handshaken) TLS socket holds the pinned key; otherwise the
 * TLS_PIN_MISMATCH error to fail the connection with (the caller destroys the socket unused).
 */
export function checkPeerPin(socket: TLSSocket, pin: string): TrustError | undefined {
  let got: string | undefined;
  try {
    got = peerPin(socket);
  } catch {
    got = undefined;
  }
  if (got === pin) return undefined;
  return new TrustError('TLS_PIN_MISMATCH', `the server's certificate does not match the pin: it has ${got ?? 'no certificate'}, expected ${pin}`);
}

/**
 * TLS verification failures as Node names them: every X509_V_ERR code Node maps to a name
 * (src/crypto/crypto_common.cc, X509ErrorCode; any other verify error is UNSPECIFIED), and the
 * hostname check. All of them, not a few: a replica whose certificate fails for a reason left
 * out here would be skipped over silently for the next one in the server list.
 */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'OUT_OF_MEM',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'UNSPECIFIED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * When `err` (or its cause) is a failed certificate check, a one-line explanation of what to do;
 * otherwise undefined.
 */
export function describeTrustFailure(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e instanceof TrustError) return e.message;
    if (typeof e.code === 'string' && TLS_VERIFY_CODES.has(e.code)) {
      return `the server's TLS certificate is not trusted (${e.code}): give the CA with --ca-file, or the pin tunnel-control printed with --ca-pin sha256:...`;
    }
  }
  return undefined;
}
