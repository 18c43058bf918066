import { and, asc, eq, gt, inArray, isNull, max, sql } from 'drizzle-orm';
import type { z } from '@hono/zod-openapi';
import type {
  ConnectionEvent,
  NodeEnrollRequestSchema,
  NodeHeartbeatRequestSchema,
  NodeListSchema,
  RevocationFeedSchema,
} from '../../protocol/api-types.js';
import { isEgressDriver } from '../../protocol/lease-claims.js';
import { parsePublicKeyLine, weakKey } from '../../protocol/ssh-key.js';
import type { Deps } from '../deps.js';
import { enrollmentTokens, leases, nodes, revocations } from '../db/schema/index.js';
import { AppError } from '../lib/errors.js';
import { hashSecret } from '../lib/ids.js';
import { audit, auditAll, type AuditEvent, type AuditType } from './audit.js';
import type { NodePrincipal } from './authz.js';
import { closeConnectionsOfEarlierRun, pruneConnections, recordConnectionEvent } from './connections.js';
import { markOnline, onlineClaimsAllowed, setOffline, setOnline } from './exposures.js';
import { FEED_RETENTION_MS, pruneHistory } from './history-prune.js';
import { sweepIdleConsoleSessions } from '../auth/idle-sessions.js';
import { activeExposuresByNode, isOnline, onlineSince } from './node-selection.js';
import { REVOCATIONS_CHANNEL } from './lease-revocation.js';
import { databaseAgo } from '../db/database-clock.js';
import { FEED_PAGE_ROWS } from '../../protocol/node-api-check.js';

/**
 * Enrolls a relay with a one-time token; enrolling again under a name replaces its key, address
 * and credential, and ends every revocation feed poll held with the old credential at once, on
 * every replica (see RevocationHub.evict).
 */
export async function enrollNode(
  deps: Pick<Deps, 'db' | 'clock' | 'ids' | 'settings'> & Partial<Pick<Deps, 'revocationHub'>>,
  body: z.infer<typeof NodeEnrollRequestSchema>,
): Promise<{ node_id: string; name: string; node_token: string; issuer: string }> {
  const now = deps.clock.now();
  try {
    parsePublicKeyLine(body.host_key);
  } catch (cause) {
    throw new AppError('VALIDATION_FAILED', `host_key: ${weakKey(cause) ?? 'not a valid ssh-ed25519 public key'}`, { cause });
  }
  const nodeToken = deps.ids.secret('tnl_node');
  const node = await deps.db.transaction(async (tx) => {
    const [tok] = await tx
      .update(enrollmentTokens)
      .set({ usedAt: now })
      .where(and(eq(enrollmentTokens.tokenHash, hashSecret(body.token)), isNull(enrollmentTokens.usedAt), gt(enrollmentTokens.expiresAt, now)))
      .returning();
    if (!tok) throw new AppError('INVALID_CREDENTIALS', 'enrollment token is unknown, used or expired; ask an admin for a new one');
    const values = { address: body.address, hostKey: body.host_key, tokenHash: hashSecret(nodeToken), enrolledAt: now };
    const [row] = await tx
      .insert(nodes)
      .values({ id: deps.ids.id('nod'), name: tok.name, ...values })
      .onConflictDoUpdate({ target: nodes.name, set: values })
      .returning();
    await audit(tx, now, { type: 'node.enrolled', actor: tok.createdBy, subject: row!.id, data: { name: tok.name, address: body.address } });
    await tx.execute(sql`select pg_notify(${REVOCATIONS_CHANNEL}, ${credentialNotice(row!.id, row!.tokenHash)})`);
    return row!;
  });
  deps.revocationHub?.evict(node.id, node.tokenHash);
  return { node_id: node.id, name: node.name, node_token: nodeToken, issuer: deps.settings.issuer };
}

/** The NOTIFY payload (on the revocations channel) that says `nodeId`'s credential is now the one hashed `hash`. */
export const credentialNotice = (nodeId: string, hash: string) => `!${nodeId}:${hash}`;

/** The node id and credential hash of a credentialNotice payload, or undefined when it is not one. */
export function readCredentialNotice(payload: string): { nodeId: string; hash: string } | undefined {
  const m = /^!([^:,]+):([^:,]+)$/.exec(payload);
  return m ? { nodeId: m[1]!, hash: m[2]! } : undefined;
}

/** Relay nodes with their status, for users (the policy decided at the route). */
export async function listNodes(deps: Pick<Deps, 'db' | 'clock' | 'settings' | 'databaseOutages'>): Promise<z.infer<typeof NodeListSchema>> {
  const now = deps.clock.now();
  const [rows, load] = await Promise.all([deps.db.select().from(nodes).orderBy(nodes.name), activeExposuresByNode(deps.db, now)]);
  const since = onlineSince(deps, now);
  return {
    nodes: rows.map((n) => ({
      id: n.id,
      name: n.name,
      address: n.address,
      host_key: n.hostKey,
      online: isOnline(n, since),
      last_seen_at: n.lastSeenAt ? n.lastSeenAt.toISOString() : null,
      enrolled_at: n.enrolledAt.toISOString(),
      active_exposures: load.get(n.id) ?? 0,
      egress_driver: isEgressDriver(n.egressDriver) ? n.egressDriver : null,
      native_crypto: n.nativeCrypto,
      version: n.version,
    })),
  };
}

/** A relay's heartbeat: it is online now and holds exactly `exposures` (those it has a lease for). */
export async function heartbeat(
  deps: Pick<Deps, 'db' | 'clock' | 'logger' | 'settings'> & Partial<Pick<Deps, 'revocationHub'>>,
  node: NodePrincipal,
  body: z.infer<typeof NodeHeartbeatRequestSchema>,
): Promise<{ server_time: string }> {
  const now = deps.clock.now();
  await deps.db
    .update(nodes)
    .set({
      lastSeenAt: now,
      version: body.version,
      nativeCrypto: body.native_crypto,
      egressDriver: body.egress_driver,
      connections: body.connections,
    })
    .where(eq(nodes.id, node.nodeId));
  await setOnline(deps, node, body.exposures, { complete: true });
  if (body.started_at) await closeConnectionsOfEarlierRun(deps.db, node.nodeId, reportedTime(body.started_at, now));
  await pruneHistory(deps.db, now, { auditRetentionDays: deps.settings.auditRetentionDays, logger: deps.logger });
  await sweepIdleConsoleSessions(deps, now);
  return { server_time: now.toISOString() };
}

/** How far ahead of the control plane's clock a relay's reported time may be (its clock's skew), at most. */
export const RELAY_CLOCK_AHEAD_MAX_MS = 3600_000;

/**
 * A time a relay reports (an event's `at`, its `started_at`), as recorded: no later than
 * RELAY_CLOCK_AHEAD_MAX_MS ahead of `now`. A connection reported in the year 9999 sat at the top
 * of `GET /v1/connections` (newest first) and was never pruned, nor was its audit event (their
 * retention counts from it); the audit event's data keeps the time as the relay sent it. Times
 * in the past are kept: a relay sends what it queued while the control plane was unreachable.
 */
export function reportedTime(at: string, now: Date): Date {
  const t = Date.parse(at);
  const latest = now.getTime() + RELAY_CLOCK_AHEAD_MAX_MS;
  return new Date(Number.isNaN(t) ? now.getTime() : Math.min(t, latest));
}

/** An event of a relay's batch refused on its own (the route read it), and why. */
export interface EventRejection {
  index: number;
  code: 'VALIDATION_FAILED' | 'UNKNOWN_FIELD';
  /** The ConnectionEventSchema field that failed, when it is one (never the relay's own key names). */
  field?: string;
}

/** Rejections an audit entry lists; the rest are counted only. */
const AUDITED_REJECTIONS = 10;

/**
 * A relay's batch of connection and exposure events: audited, the connections table and
 * exposures' status follow. Events the route refused one by one (`rejected`) are counted
 * (tunnel_control_relay_events_rejected_total{code}) and audited as one relay.events_rejected
 * entry per batch, with the first few of them: the batch's valid events are recorded all the same.
 */
export async function recordEvents(
  deps: Pick<Deps, 'db' | 'clock' | 'logger' | 'metrics'>,
  node: NodePrincipal,
  events: ConnectionEvent[],
  rejected: readonly EventRejection[] = [],
): Promise<void> {
  const now = deps.clock.now();
  await deps.db.transaction(async (tx) => {
    if (rejected.length > 0) {
      await audit(tx, now, {
        type: 'relay.events_rejected',
        actor: node.nodeId,
        data: { node: node.name, rejected: rejected.length, accepted: events.length, first: rejected.slice(0, AUDITED_REJECTIONS) },
      });
    }
    if (events.length === 0) return;
    // A relay speaks for the leases issued for it only: a lease id of another relay's (or none's)
    // is not linked to the connection, so one relay cannot put connections under other members'
    // leases (their /v1/connections and their exposures' owners'). The audit keeps what it claimed.
    const claimed = [...new Set(events.flatMap((e) => (e.lease_id ? [e.lease_id] : [])))];
    const own = new Set(
      claimed.length
        ? (await tx.select({ id: leases.id }).from(leases).where(and(eq(leases.nodeId, node.nodeId), inArray(leases.id, claimed)))).map((r) => r.id)
        : [],
    );
    // Which exposures it may report online is decided once for the batch (it was once per
    // event: a batch of 1,000 exposure_online events was 1,000 lease lookups and log lines).
    const claims = [...new Set(events.flatMap((e) => (e.type === 'exposure_online' && e.exposure ? [e.exposure] : [])))];
    const mayBeOnline = await onlineClaimsAllowed({ ...deps, db: tx }, node, claims);
    // The events' audit rows go in one statement (in the batch's order), not one each: a batch
    // of 1,000 was 1,000 inserts, most of a second of the embedded database.
    const audited: { at: Date; e: AuditEvent }[] = [];
    const writes: { at: Date; e: ConnectionEvent }[] = [];
    for (const raw of events) {
      const at = reportedTime(raw.at, now);
      const foreign = raw.lease_id !== undefined && !own.has(raw.lease_id);
      const { lease_id: claimedLease, ...rest } = raw;
      const e: ConnectionEvent = foreign ? rest : raw;
      audited.push({
        at,
        e: {
          type: `relay.${e.type}` as AuditType,
          actor: node.nodeId,
          subject: e.lease_id ?? e.exposure ?? null,
          data: { ...e, node: node.name, ...(foreign ? { not_its_lease: claimedLease } : {}) },
        },
      });
      writes.push({ at, e });
    }
    // Rows are written in one order whatever the batch's (connections by session, then
    // exposures by name; a row's own events keep theirs: the sort is stable): two batches of a
    // relay applied at once, naming the same rows in opposite order, each held a row the other
    // waited for, and Postgres failed one (relay-events-lock-order.test).
    for (const { e, at } of lockOrder(writes, (w) => w.e.session_id)) await recordConnectionEvent(tx, node.nodeId, e, at);
    for (const { e } of lockOrder(writes, (w) => w.e.exposure)) {
      if (e.exposure && e.type === 'exposure_online') {
        if (mayBeOnline.has(e.exposure)) await markOnline(tx, node, e.exposure, e.port ?? null, now);
      } else if (e.exposure && e.type === 'exposure_offline') {
        await setOffline(deps, tx, node, e.exposure);
      }
    }
    await auditAll(tx, audited);
    await pruneConnections(tx);
  });
  for (const code of new Set(rejected.map((r) => r.code))) {
    const n = rejected.filter((r) => r.code === code).length;
    deps.metrics.inc('tunnel_control_relay_events_rejected_total', 'Relay connection events refused one by one (the rest of their batch recorded), by code', { code }, n);
  }
}

/** The items with a key, ordered by it (code units; stable, so one key's items keep their order). */
function lockOrder<T>(items: readonly T[], key: (item: T) => string | undefined): T[] {
  const keyed = items.flatMap((item) => {
    const k = key(item);
    return k === undefined ? [] : [{ k, item }];
  });
  return keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0)).map((x) => x.item);
}

type Feed = z.infer<typeof RevocationFeedSchema>;

/** Longest a relay's poll may be held (`?wait=`), seconds. */
export const MAX_FEED_WAIT = 25;

/**
 * The node's revocation feed after `after`. With `waitMs`, a long poll: when the database has
 * nothing after the cursor, the answer waits until this replica commits a revocation for the
 * node (handed over as is, cursor unchanged: the relay reads them again with the cursor next
 * time), another replica's NOTIFY (read the database again), or the time is up. Revocations
 * pushed while the database read is still queued are answered at once (an embedded database
 * busy with the very writes that revoked queues that read for seconds). Pushed entries are handed
 * over as they are: this replica just revoked their leases, unexpired or expired at most
 * REVOKED_AFTER_EXPIRY_MS before by the database's clock (lease-revocation.ts), so the relay may
 * need every one (filtered by this replica's clock, one over an hour ahead left them out).
 */
export async function revocationFeed(
  deps: Pick<Deps, 'db' | 'revocationHub' | 'settings'>,
  node: NodePrincipal,
  after: number,
  askedMs = 0,
  /** The hash of the credential the poll came with: a poll held with a replaced one ends in 401. */
  credential = '',
): Promise<Feed> {
  const waitMs = Math.min(askedMs, deps.settings.revocationFeedMaxWait * 1000, deps.revocationHub.holdCapMs);
  const waiter = waitMs > 0 ? deps.revocationHub.waiter(node.nodeId, credential) : undefined;
  if (!waiter) return readFeed(deps, node, after);
  try {
    const read = readFeed(deps, node, after);
    read.catch(() => {}); // when a push wins the race, nobody awaits the read
    const first = await Promise.race([read.then((page) => ({ page })), waiter.next(waitMs).then((outcome) => ({ outcome }))]);
    if (waiter.evicted) throw credentialReplaced();
    const pushed = (revocations: Feed['revocations']): Feed => ({ cursor: String(after), revocations });
    if ('outcome' in first) {
      if (first.outcome.kind === 'pushed') return pushed(first.outcome.revocations);
      const answer = await read; // a poke or the time is up while the database read was queued: its answer
      if (waiter.evicted) throw credentialReplaced();
      return answer;
    }
    const { page } = first;
    const early = waiter.take();
    if (page.revocations.length || page.cursor !== String(after) || early.length) {
      return { cursor: page.cursor, revocations: [...page.revocations, ...early] };
    }
    const outcome = await waiter.next(waitMs);
    if (outcome.kind === 'evicted') throw credentialReplaced();
    if (outcome.kind === 'pushed') return pushed(outcome.revocations);
    const last = await readFeed(deps, node, after);
    if (waiter.evicted) throw credentialReplaced();
    return last;
  } finally {
    waiter.close();
  }
}

const credentialReplaced = () => new AppError('TOKEN_INVALID', 'this node enrolled again: its credential was replaced while the poll was held');

/**
 * Whether the relay may still need a feed entry, as SQL on `revocations`: unless its lease expired
 * FEED_RETENTION_MS ago by the database's clock (when the history prune deletes it). The relay
 * decides whether a lease has expired, by its own clock, and prunes what it no longer needs
 * (node/leases/revocation-feed.ts); a page's cursor moves past every entry it read, sent or not.
 * Skipped as soon as this replica's clock said the lease had expired, an entry read through a
 * replica whose clock ran ahead (by 40 minutes, with 30 left on the lease) was never sent, and
 * the relay accepted the revoked lease until it really expired; skipped an hour after that by
 * this replica's clock, likewise through a replica over an hour ahead. The database's clock is
 * the one every replica, and the prune, judge by.
 */
const mayNeed = () => sql<boolean>`${revocations.expiresAt} > ${databaseAgo(FEED_RETENTION_MS)}`;

/** One page of the node's feed after `after`, skipping entries the relay no longer needs (`mayNeed`). */
async function readFeed(deps: Pick<Deps, 'db'>, node: NodePrincipal, after: number): Promise<Feed> {
  const rows = await deps.db
    .select({ seq: revocations.seq, leaseId: revocations.leaseId, expiresAt: revocations.expiresAt, needed: mayNeed() })
    .from(revocations)
    .where(and(eq(revocations.nodeId, node.nodeId), gt(revocations.seq, after)))
    .orderBy(asc(revocations.seq))
    .limit(FEED_PAGE_ROWS);
  let cursor = rows.length ? rows[rows.length - 1]!.seq : after;
  if (rows.length === 0 && after > 0) {
    // A cursor beyond every entry (the database restored from an older backup, or a relay's
    // state from another database) would skip the entries numbered up to it from now on: move
    // it back to this node's last entry (entries may then come twice, never not at all; every
    // later one is numbered above it). Its own, not the feed's: the feed's last number is how
    // many leases were revoked on every relay, which is no business of this one.
    const [last] = await deps.db.select({ seq: max(revocations.seq) }).from(revocations).where(eq(revocations.nodeId, node.nodeId));
    const top = Number(last?.seq ?? 0);
    if (top < after) cursor = top;
  }
  return {
    cursor: String(cursor),
    revocations: rows.filter((r) => r.needed).map((r) => ({ lease_id: r.leaseId, exp: Math.floor(r.expiresAt.getTime() / 1000) })),
  };
}
