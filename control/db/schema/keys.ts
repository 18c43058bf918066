import { pgTable, text, timestamp } from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/**
 * Signing keys (lease/JWT `sig` and SSH user CA `ssh-ca`). Private keys are encrypted at rest.
 * Life of a key: published from `createdAt`; signs from `activateAt` until `retireAt`;
 * published until `expireAt` (everything it signed has expired by then).
 */
export const signingKeys = pgTable('signing_keys', {
  kid: text('kid').primaryKey(),
  use: text('use', { enum: ['sig', 'ssh-ca'] }).notNull(),
  /** 32 raw Ed25519 public key bytes, base64url. */
  publicKey: text('public_key').notNull(),
  /** AES-256-GCM sealed PKCS#8 DER, see keys/sealed-box.ts. */
  privateKeySealed: text('private_key_sealed').notNull(),
  createdAt: ts('created_at').notNull(),
  activateAt: ts('activate_at').notNull(),
  retireAt: ts('retire_at'),
  expireAt: ts('expire_at'),
});
