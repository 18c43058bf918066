import { z } from 'zod';

/**
 * Fields shared by the API bodies of api-types.ts and the relay's own bodies in node-api.ts
 * (which the relay loads without the rest of the API: issue 11, idle relay RSS).
 */

export const NodeNameSchema = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must match [a-z0-9][a-z0-9-]{0,62}');
/** An OpenSSH public key line (`ssh-ed25519 AAAA... [comment]`). */
export const PublicKeyLineSchema = z
  .string()
  .min(16)
  .max(1024)
  // eslint-disable-next-line no-control-regex -- the comment may be any text but control characters
  .regex(/^ssh-ed25519 [A-Za-z0-9+/=]+( [^\u0000-\u001f\u007f]*)?$/, 'must be an ssh-ed25519 public key line');
export const TimestampSchema = z.string().describe('RFC 3339 timestamp');
