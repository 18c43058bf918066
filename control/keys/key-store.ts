import type { KeyObject } from 'node:crypto';

export type KeyUse = 'sig' | 'ssh-ca';

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface PublishedKey {
  kid: string;
  use: KeyUse;
  /** 32 raw Ed25519 public key bytes. */
  raw: Buffer;
  publicKey: KeyObject;
}

/**
 * Lease-signing and SSH CA keys. Implementations guarantee: a key is published before it signs;
 * a retired key stays published until everything it signed has expired.
 */
export interface KeyStore {
  /** Creates the first keys when there are none and schedules rotation when one is due. */
  ensure(): Promise<void>;
  /** The key that signs now for `use`. */
  signing(use: KeyUse): Promise<SigningKey>;
  /** Every key that must be published (JWKS). */
  published(): Promise<PublishedKey[]>;
  /** Publishes a new key for `use` that starts signing after `leadSeconds`. Returns its kid. */
  rotate(use: KeyUse, leadSeconds?: number): Promise<string>;
  /**
   * A 32-byte secret for `purpose`, the same on every replica (derived from the master key) and
   * never stored: for values the server must be able to compute again, like a refresh token's
   * successor.
   */
  derivedSecret(purpose: string): Buffer;
}
