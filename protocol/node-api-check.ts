import { arr, num, obj, opt, read, str, type Check } from './check.js';
import { LEASE_ID_RE, LEASE_TIME_MAX } from './lease-claims-check.js';
import type { EventBatchResultSchema, NodeEnrollResponseSchema, NodeHeartbeatResponseSchema, RevocationFeedSchema } from './node-api.js';
import type { z } from 'zod';

/**
 * The bounds of the relay's bodies (node-api.ts holds their zod schemas and re-exports these),
 * and the relay's plain checks of the answers it reads: tunnel-node reads them without zod
 * (issue 11, idle relay RSS; protocol/check.ts). protocol/relay-checks.test compares each check
 * with its schema on the same inputs.
 */

/** Node names: what the control plane gives a relay at enrollment (api-fields.ts's NodeNameSchema). */
export const NODE_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Events in one `POST /v1/nodes/self/events` batch, at most. */
export const EVENT_BATCH_MAX_EVENTS = 1000;
/**
 * Bytes of one batch's JSON body a relay sends at most. The control plane's body limit must be
 * at least this (its default is 64 KiB); a relay that still gets 413 halves its batches.
 */
export const EVENT_BATCH_MAX_BYTES = 32 * 1024;
/** Characters of a revocation feed cursor, at most (the control plane's is a sequence number). */
export const FEED_CURSOR_MAX = 128;
/**
 * Entries in one revocation feed answer, at most. The control plane sends at most one database
 * page (FEED_PAGE_ROWS) plus what a held poll buffered (the revocation hub's maxBuffered); a
 * relay refuses a longer answer as unreadable (before: only its 16 MiB answer limit bounded it,
 * about 280,000 entries).
 */
export const FEED_PAGE_MAX_ENTRIES = 4000;
/** Rows of the feed the control plane reads for one answer, at most. */
export const FEED_PAGE_ROWS = 1000;

export type NodeEnrollResponse = z.infer<typeof NodeEnrollResponseSchema>;
export type NodeHeartbeatResponse = z.infer<typeof NodeHeartbeatResponseSchema>;
export type RevocationFeed = z.infer<typeof RevocationFeedSchema>;
export type EventBatchResult = z.infer<typeof EventBatchResultSchema>;

const enrolled: Check<NodeEnrollResponse> = obj({ node_id: str(), name: str({ re: NODE_NAME_RE }), node_token: str(), issuer: str() });
const heartbeat: Check<NodeHeartbeatResponse> = obj({ server_time: str() });
const feed: Check<RevocationFeed> = obj({
  cursor: str({ max: FEED_CURSOR_MAX }),
  // exp bounded as a lease's own (lease-claims-check.ts): an entry past it would never be pruned.
  revocations: arr(obj({ lease_id: str({ re: LEASE_ID_RE }), exp: num({ int: true, min: 0, max: LEASE_TIME_MAX }) }), { max: FEED_PAGE_MAX_ENTRIES }),
});
const eventBatchResult: Check<EventBatchResult> = obj({
  accepted: num({ int: true, min: 0 }),
  rejected: arr(obj({ index: num({ int: true, min: 0 }), code: str({ max: 64 }), field: opt(str({ max: 64 })) }), { max: EVENT_BATCH_MAX_EVENTS }),
});

/** A relay-side reader: the value read with its schema's rules, or undefined. */
export type Reader<T> = (v: unknown) => T | undefined;
const reader =
  <T>(c: Check<T>): Reader<T> =>
  (v) => {
    const r = read(c, v);
    return r.ok ? r.value : undefined;
  };

/** NodeEnrollResponseSchema's rules. */
export const checkNodeEnrollResponse = reader(enrolled);
/** NodeHeartbeatResponseSchema's rules. */
export const checkNodeHeartbeatResponse = reader(heartbeat);
/** RevocationFeedSchema's rules. */
export const checkRevocationFeed = reader(feed);
/** EventBatchResultSchema's rules. */
export const checkEventBatchResult = reader(eventBatchResult);
