import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

/**
 * A fresh Ed25519 key pair for tests that hand it to jose: the generated key rebuilt from its
 * PKCS#8 DER. jose reads a KeyObject on Node 20 through `export({ format: 'jwk' })`, and under Node
 * 20 that export of a key straight from generateKeyPairSync can deadlock: it holds the key's lock
 * while it allocates, and a collection there runs the key generation job's destructor, which waits
 * on the same lock for ever (protocol/ssh-key.ts ed25519Seed, rawPublicKey). A rebuilt key shares
 * nothing with that job; its DER export does not take that path.
 */
export function ed25519Pair(): { privateKey: KeyObject; publicKey: KeyObject } {
  const der = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'der' });
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}
