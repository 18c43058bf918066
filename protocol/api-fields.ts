import { z } from 'zod';
import { HOST_PORT_RE, parseHostPort } from './host-port.js';
import { NODE_NAME_RE } from './node-api-check.js';

/**
 * Fields shared by the API bodies of api-types.ts and the relay's own bodies in node-api.ts
 * (which the relay loads without the rest of the API: issue 11, idle relay RSS).
 */

export const NodeNameSchema = z.string().regex(NODE_NAME_RE, 'must match [a-z0-9][a-z0-9-]{0,62}');
/** An OpenSSH public key line (`ssh-ed25519 AAAA... [comment]`). */
export const PublicKeyLineSchema = z
  .string()
  .min(16)
  .max(1024)
  // eslint-disable-next-line no-control-regex -- the comment may be any text but control characters
  .regex(/^ssh-ed25519 [A-Za-z0-9+/=]+( [^\u0000-\u001f\u007f]*)?$/, 'must be an ssh-ed25519 public key line');
export const TimestampSchema = z.string().describe('RFC 3339 timestamp');

/**
 * `host:port` where a relay listens for SSH (as enrolled, and as leases and node lists carry it).
 * Port 0 passes: a relay listening on an ephemeral port (tests) enrolls with what it was given.
 */
export const AddressSchema = z
  .string()
  .min(3)
  .max(260)
  .regex(HOST_PORT_RE, 'must be host:port')
  .refine((s) => parseHostPort(s, { allowZero: true }) !== undefined, 'must be host:port with a port up to 65535');
