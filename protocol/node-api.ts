import { z } from 'zod';
import { AddressSchema, NodeNameSchema, PublicKeyLineSchema, TimestampSchema } from './api-fields.js';
import { EgressDriverSchema, ExposureNameSchema, LeaseIdSchema, PortSchema } from './lease-claims.js';
import { LEASE_TIME_MAX } from './lease-claims-check.js';
import { EVENT_BATCH_MAX_EVENTS, FEED_CURSOR_MAX, FEED_PAGE_MAX_ENTRIES } from './node-api-check.js';
import { instant, int32, opaqueToken, safeCount, text } from './primitives.js';

export { EVENT_BATCH_MAX_BYTES, EVENT_BATCH_MAX_EVENTS, NODE_NAME_RE } from './node-api-check.js';

/**
 * The bodies a relay node exchanges with the control plane (`/v1/nodes/enroll` and
 * `/v1/nodes/self/...`): enrollment, heartbeat, revocation feed, connection events. Part of the
 * API (api-types.ts re-exports them, the control plane validates and documents them from here);
 * in a file of their own so the relay builds these schemas and not the hundred others of the
 * API it never reads (about 1 MB of an idle relay's heap: issue 11). The relay itself reads the
 * answers through node-api-check.ts's plain checks (no zod), tested against these schemas.
 */

export const NodeEnrollRequestSchema = z.strictObject({
  token: opaqueToken(),
  host_key: PublicKeyLineSchema,
  address: AddressSchema,
});
export const NodeEnrollResponseSchema = z.object({
  node_id: z.string(),
  name: NodeNameSchema,
  /** Bearer credential of the node for heartbeat, revocation feed and events. Shown once. */
  node_token: z.string(),
  issuer: z.string(),
});

export const NodeHeartbeatRequestSchema = z.strictObject({
  version: text(64),
  native_crypto: z.boolean(),
  egress_driver: EgressDriverSchema,
  connections: int32(),
  exposures: z.array(z.strictObject({ name: ExposureNameSchema, port: PortSchema })).max(10000),
  /**
   * When this relay process started (its own clock, as its events' `at`). Connections it reported
   * open before then belong to an earlier run that ended without closing them (a crash): the
   * control plane closes them, so they stop looking live once the relay is back.
   */
  started_at: instant().optional(),
});
export const NodeHeartbeatResponseSchema = z.object({ server_time: TimestampSchema });

/** Revocation feed: `GET /v1/nodes/self/revocations?after=CURSOR` returns entries after the cursor. */
export const RevocationSchema = z.object({
  lease_id: LeaseIdSchema,
  /** Lease expiry (unix seconds); a relay may forget the entry after it. */
  exp: z.number().int().min(0).max(LEASE_TIME_MAX),
});
export const RevocationFeedSchema = z.object({
  cursor: z.string().max(FEED_CURSOR_MAX),
  revocations: z.array(RevocationSchema).max(FEED_PAGE_MAX_ENTRIES),
});

export const ConnectionEventSchema = z.strictObject({
  type: z.enum(['conn_open', 'conn_close', 'exposure_online', 'exposure_offline', 'auth_fail']),
  at: instant(),
  lease_id: text(128).optional(),
  session_id: text(128).optional(),
  remote: text(128).optional(),
  exposure: ExposureNameSchema.optional(),
  port: PortSchema.optional(),
  bytes_in: safeCount().optional(),
  bytes_out: safeCount().optional(),
  reason: text(256).optional(),
});
/**
 * `POST /v1/nodes/self/events` takes `{ events: [...] }`, 1 to EVENT_BATCH_MAX_EVENTS of them.
 * The control plane reads the envelope strictly (a malformed one is a 400) and each event on its
 * own against ConnectionEventSchema: an event outside it is refused alone (EventBatchResultSchema's
 * `rejected`) and the others are recorded. One event a relay got wrong, or one of a type only a
 * newer relay knows, must not lose the batch's 999 others.
 */
export type ConnectionEvent = z.infer<typeof ConnectionEventSchema>;

/** The answer to a batch (202): how many events were recorded, and which were refused and why. */
export const EventBatchResultSchema = z.object({
  accepted: z.number().int().min(0),
  rejected: z
    .array(
      z.object({
        /** The event's position in the batch. */
        index: z.number().int().min(0),
        /** VALIDATION_FAILED or UNKNOWN_FIELD (the API's problem codes). */
        code: z.string().max(64),
        /** The event field that failed, when it is one of the schema's. */
        field: z.string().max(64).optional(),
      }),
    )
    .max(EVENT_BATCH_MAX_EVENTS),
});
