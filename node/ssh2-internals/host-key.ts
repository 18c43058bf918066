import { createPrivateKey, sign as cryptoSign } from 'node:crypto';
import type { ParsedKey } from 'ssh2';
import { parseKey } from './modules.js';

/**
 * The ed25519 host key, parsed once, whose `sign` uses a node:crypto KeyObject. ssh2's own
 * `sign` hands its PKCS#8 PEM text to `crypto.sign` on every key exchange, which makes OpenSSL 3
 * decode the key each time: about 1.2 ms against 0.12 ms with a KeyObject on this machine, a
 * fifth of the relay's CPU per new connection (issue 11, setup rate). The signature is the same
 * (Ed25519 is deterministic). Other key types are returned as ssh2 parsed them.
 */
export function hostKeyWithKeyObject(pem: string): ParsedKey {
  const result = parseKey(pem) as ParsedKey | ParsedKey[] | Error;
  if (result instanceof Error) throw result;
  const parsed = Array.isArray(result) ? result[0] : result; // OpenSSH files hold one key
  if (!parsed) throw new Error('host key file holds no key');
  if (parsed.type !== 'ssh-ed25519') return parsed;
  const privateKey = createPrivateKey(parsed.getPrivatePEM());
  // ssh2's contract: return the signature, or an Error (never throw).
  (parsed as { sign: (data: Buffer, algo?: string) => Buffer | Error }).sign = (data) => {
    try {
      return cryptoSign(null, data, privateKey);
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  };
  return parsed;
}
