import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { certificatePin } from '../../protocol/tls-pin.js';
import type { ControlConfig } from '../config.js';
import { ConfigError } from '../config.js';
import type { Logger } from '../../shared/logger.js';
import { createSelfSignedCert } from './self-signed.js';
import { readFileBoundedSync, readFileBoundedSyncWithMode } from '../../shared/read-file-bounded.js';
import { resetOpenMode } from '../../shared/reset-open-mode.js';

/** The certificate and key the HTTPS server uses now, with the pin clients give as --ca-pin. */
export interface TlsMaterial {
  cert: string;
  key: string;
  pin: string;
  certFile: string;
  keyFile: string;
  notAfter: string;
}

export const SELF_SIGNED_CERT = 'cert.pem';
export const SELF_SIGNED_KEY = 'key.pem';

/**
 * The most a certificate chain or key file may hold (a chain of a few certificates is a few KB, an
 * RSA-8192 key under 7 KB): a path that names `/dev/zero` or a huge file is refused, not read until
 * memory runs out, and a FIFO or terminal is refused rather than waited on.
 */
export const TLS_FILE_MAX_BYTES = 1024 * 1024;

/**
 * Reads a certificate chain and its key, and checks that they belong together (a mismatch is
 * reported here, not as a failed handshake later). The pin is that of the first (leaf) certificate.
 */
export function readTlsFiles(certFile: string, keyFile: string): TlsMaterial {
  return readTlsPair(certFile, keyFile).material;
}

/** readTlsFiles, with the mode of the key file it read (fstat on the descriptor read). */
function readTlsPair(certFile: string, keyFile: string): { material: TlsMaterial; keyMode: number } {
  let cert: string;
  let key: string;
  let keyMode: number;
  try {
    cert = readFileBoundedSync(certFile, TLS_FILE_MAX_BYTES).toString('utf8');
    const read = readFileBoundedSyncWithMode(keyFile, TLS_FILE_MAX_BYTES);
    key = read.bytes.toString('utf8');
    keyMode = read.mode;
  } catch (err) {
    throw new ConfigError(`cannot read the TLS certificate or key: ${(err as Error).message}`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
    if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new Error('the key does not belong to the certificate');
  } catch (err) {
    throw new ConfigError(`TLS certificate ${certFile} / key ${keyFile}: ${(err as Error).message}`);
  }
  return { material: { cert, key, pin: certificatePin(cert), certFile, keyFile, notAfter: new Date(leaf.validTo).toISOString() }, keyMode };
}

/**
 * Whether the chain's first certificate signed itself: a client then trusts it only as its own CA
 * (curl --cacert FILE) or by its pin, never through the system CAs.
 */
export function isSelfSignedLeaf(certPem: string): boolean {
  try {
    const leaf = new X509Certificate(certPem);
    return leaf.issuer === leaf.subject && leaf.verify(leaf.publicKey);
  } catch {
    return false;
  }
}

/** The names a self-signed certificate covers: the public URL's host, the listen host, loopback. */
export function selfSignedNames(cfg: Pick<ControlConfig, 'publicUrl' | 'listenHost'>): string[] {
  const names = [new URL(cfg.publicUrl).hostname.replace(/^\[|\]$/g, '')];
  if (cfg.listenHost !== '0.0.0.0' && cfg.listenHost !== '::') names.push(cfg.listenHost);
  names.push('localhost', '127.0.0.1', '::1');
  return [...new Set(names.filter((n) => n && (isIP(n) || /^[A-Za-z0-9.-]+$/.test(n))))];
}

/**
 * The self-signed pair in `dir`, created (key mode 0600) on the first start and reused after,
 * so the pin stays the same. Delete both files to make a new one (the pin then changes).
 */
export function ensureSelfSigned(dir: string, names: readonly string[], now: Date, logger: Logger): TlsMaterial {
  const certFile = join(dir, SELF_SIGNED_CERT);
  const keyFile = join(dir, SELF_SIGNED_KEY);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let exists = true;
  try {
    statSync(certFile);
  } catch {
    exists = false;
  }
  if (!exists) {
    const made = createSelfSignedCert(names, now);
    // The key first, exclusively: two processes on one data dir cannot both write a pair.
    writeFileSync(keyFile, made.keyPem, { mode: 0o600, flag: 'wx' });
    writeFileSync(certFile, made.certPem, { mode: 0o644, flag: 'wx' });
    logger.info('created a self-signed TLS certificate', { path: certFile, names });
  }
  const { material, keyMode } = readTlsPair(certFile, keyFile);
  if (exists) resetOpenMode(keyFile, keyMode, logger, 'TLS key file was readable by others; reset its mode to 0600');
  return material;
}

/** What `serve` uses: undefined for plain HTTP. */
export function loadTls(cfg: Pick<ControlConfig, 'tls' | 'publicUrl' | 'listenHost'>, logger: Logger, now = new Date()): TlsMaterial | undefined {
  switch (cfg.tls.mode) {
    case 'off':
      return undefined;
    case 'files':
      return readTlsFiles(cfg.tls.certFile, cfg.tls.keyFile);
    case 'self-signed':
      return ensureSelfSigned(cfg.tls.dir, selfSignedNames(cfg), now, logger);
  }
}
