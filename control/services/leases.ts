import { and, desc, eq, gt, inArray, isNull, sql, type SQL } from 'drizzle-orm';
import type { LeaseCreate, LeaseIssued, Lease } from '../../protocol/api-types.js';
import { parsePublicKeyLine, weakKey } from '../../protocol/ssh-key.js';
import { formatCertificateLine } from '../../protocol/ssh-cert.js';
import { LEASE_ID_PREFIX, type LeaseTarget } from '../../protocol/lease-claims.js';
import type { Deps } from '../deps.js';
import { egressTargets, exposures, leases, nodes, users } from '../db/schema/index.js';
import { AppError, notFound } from '../lib/errors.js';
import { issueLease, LeaseTooLargeError, type IssuedLease, type LeaseGrant } from '../ca/lease-issuer.js';
import { EGRESS_TARGETS_MAX_BYTES, egressTargetsBytes } from '../../protocol/lease-size.js';
import { preparedPerDb } from '../db/prepared.js';
import { exposureCurrentNode, isOnline, onlineSince, pickExposeNode } from './node-selection.js';
import { assertAllowed, can, type UserPrincipal } from './authz.js';
import { exposureResource } from './exposures.js';
import { revoking } from './lease-revocation.js';
import { recheckAdminUnderLock } from './owner-lock.js';
import { insertLeaseIfUnchanged, type CallerAsRead, type DecidedOn } from './lease-insert.js';
import type { CallerExposure, LeaseNode } from '../http/authenticate.js';

type LeaseRow = typeof leases.$inferSelect;

/** A lease's times as the API and the database statements write them (ISO 8601). */
export interface LeaseTimes {
  notBefore: string;
  expiresAt: string;
  createdAt: string;
}

export const leaseTimes = (row: Pick<LeaseRow, 'notBefore' | 'expiresAt' | 'createdAt'>): LeaseTimes => ({
  notBefore: row.notBefore.toISOString(),
  expiresAt: row.expiresAt.toISOString(),
  createdAt: row.createdAt.toISOString(),
});

/** `times`: the row's, when already written out (a lease being issued: SignedLease.times). */
export function leaseView(row: LeaseRow, userName: string, nodeName: string, times: LeaseTimes = leaseTimes(row)): Lease {
  return {
    id: row.id,
    kind: row.kind,
    user: userName,
    node: nodeName,
    exposure: row.exposure,
    port: row.port,
    targets: row.targets,
    ssh_key: row.sshKey,
    serial: row.serial,
    not_before: times.notBefore,
    expires_at: times.expiresAt,
    revoked_at: row.revokedAt ? row.revokedAt.toISOString() : null,
    created_at: times.createdAt,
  };
}

/** The exposure with the node holding it now, in one query (open leases go there). Prepared: every issuance runs it. */
const exposureQuery = preparedPerDb((db) =>
  db
    .select({ exp: exposures, current: nodes })
    .from(exposures)
    .leftJoin(nodes, and(eq(exposures.online, true), eq(nodes.id, exposures.currentNodeId)))
    .where(eq(exposures.name, sql.placeholder('name')))
    .limit(1)
    .prepare('lease_exposure'),
);

/**
 * Why an exposure has no relay to open it on, for the person asking: its relay's last report had X
 * connected, but the relay has not reported since (stopped, or cut off from the control plane),
 * or simply no `tunnel expose` is connected.
 */
function offlineReason(reportedOn: LeaseNode | null, onlinePort: number | null, now: Date): string {
  if (!reportedOn || onlinePort === null || !reportedOn.lastSeenAt) return 'no tunnel expose is connected';
  const secs = Math.max(0, Math.round((now.getTime() - reportedOn.lastSeenAt.getTime()) / 1000));
  return `its relay ${reportedOn.name} has not reported for ${secs} s (stopped, or cut off from the control plane); tunnel expose moves to another relay once it notices`;
}

/**
 * Issues a lease: authorization, node choice, token + certificate, row + audit event. `read`:
 * the exposure as the route's guard already read it with the caller (http/authenticate.ts
 * `exposureOf`); used when it is the one the request names, else it is read here. The row is
 * written only if the caller (`caller`, as the guard read it) and the exposure or egress targets
 * the decision read are unchanged under share locks (services/lease-insert.ts); undefined when
 * they changed (nothing written): the caller decides again on what is there now.
 */
export async function createLease(deps: Deps, p: UserPrincipal, caller: CallerAsRead, req: LeaseCreate, read?: CallerExposure): Promise<LeaseIssued | undefined> {
  const now = deps.clock.now();
  let clientKey: Buffer;
  try {
    clientKey = parsePublicKeyLine(req.public_key).publicKey;
  } catch (cause) {
    throw new AppError('VALIDATION_FAILED', `public_key: ${weakKey(cause) ?? 'not a valid ssh-ed25519 public key'}`, { cause });
  }

  let grant: LeaseGrant;
  let node: LeaseNode | undefined;
  let openPort: number | null = null;
  let decidedOn: DecidedOn;
  if (req.kind === 'expose' || req.kind === 'open') {
    if (!req.exposure) throw new AppError('VALIDATION_FAILED', `exposure: required for a ${req.kind} lease`);
    if (req.targets) throw new AppError('LEASE_KIND_MISMATCH', `targets: not allowed in a ${req.kind} lease`);
    if (req.avoid_nodes && req.kind !== 'expose') throw new AppError('LEASE_KIND_MISMATCH', 'avoid_nodes: only for expose leases');
    // The exposure with the node holding it now, in one query (open leases go there).
    const found = read?.name === req.exposure ? (read.exp ? { exp: read.exp, current: read.current } : undefined) : (await exposureQuery(deps.db).execute({ name: req.exposure }))[0];
    assertAllowed(p, req.kind === 'expose' ? 'lease.issue.expose' : 'lease.issue.open', exposureResource(req.exposure, found?.exp));
    const exp = found!.exp;
    decidedOn = { exposure: { name: exp.name, ownerId: exp.ownerId, allow: exp.allow } };
    if (req.kind === 'expose') {
      grant = { kind: 'expose', exposure: exp.name, port: req.port ?? 22 };
      node = await pickExposeNode(deps.db, now, onlineSince(deps, now), exp, req.avoid_nodes);
      if (!node) throw new AppError('NO_NODE_AVAILABLE', 'no relay node is online', { retryable: true });
    } else {
      if (req.port !== undefined) throw new AppError('LEASE_KIND_MISMATCH', 'port: only for expose leases');
      grant = { kind: 'open', exposure: exp.name };
      // Only while X is connected (or just got its expose lease): never a lease for an offline exposure.
      const since = onlineSince(deps, now);
      if (found?.current && exp.onlinePort !== null && isOnline(found.current, since)) {
        node = found.current;
        openPort = exp.onlinePort;
      } else {
        const current = await exposureCurrentNode(deps.db, now, since, exp);
        node = current?.node;
        openPort = current?.port ?? null;
      }
      if (!node) throw new AppError('EXPOSURE_OFFLINE', `"${exp.name}" is not online: ${offlineReason(found?.current ?? null, exp.onlinePort, now)}`, { retryable: true });
    }
  } else {
    if (!req.targets) throw new AppError('VALIDATION_FAILED', 'targets: required for an egress lease');
    if (req.exposure || req.port !== undefined || req.avoid_nodes) throw new AppError('LEASE_KIND_MISMATCH', 'exposure/port/avoid_nodes: not allowed in an egress lease');
    const names = [...new Set(req.targets)];
    const rows = await deps.db.select().from(egressTargets).where(inArray(egressTargets.name, names));
    for (const n of names) assertAllowed(p, 'lease.issue.egress', { name: n, allow: rows.find((r) => r.name === n)?.allow ?? null });
    const nodeIds = new Set(rows.map((r) => r.nodeId));
    if (nodeIds.size !== 1) throw new AppError('VALIDATION_FAILED', 'targets: all egress targets of one lease must be on the same node');
    const targets = rows.map((r): LeaseTarget => ({ host: r.host, port: r.port }));
    // Each target fits (a host of at most 253 characters), not every set of them: refused here, before anything is signed or written.
    const size = egressTargetsBytes(targets);
    if (size > EGRESS_TARGETS_MAX_BYTES) {
      throw new AppError(
        'LEASE_TOO_LARGE',
        `targets: these ${targets.length} egress targets take ${size} bytes in the lease, more than the ${EGRESS_TARGETS_MAX_BYTES} its certificate has room for; ask for fewer targets per lease`,
      );
    }
    [node] = await deps.db.select().from(nodes).where(eq(nodes.id, rows[0]!.nodeId)).limit(1);
    if (!node) throw new AppError('NO_NODE_AVAILABLE', 'the egress targets\' node is gone');
    grant = { kind: 'egress', targets };
    decidedOn = { targets: rows.map((r) => ({ name: r.name, nodeId: r.nodeId, host: r.host, port: r.port, allow: r.allow })) };
  }

  const signed = await signLease(deps, p, req, { grant, node, openPort, clientKey, now });
  if (!(await insertLeaseIfUnchanged(deps, caller, decidedOn, signed))) return undefined;
  return leaseIssued(deps, p, node, signed);
}

/**
 * A lease signed and ready to be stored: its row, its times written out (once: for the statement
 * that stores it and for the answer; Date's toISOString was about 1% of a lease's CPU, issue 11),
 * its `lease.issued` audit data, token and certificate.
 */
export interface SignedLease {
  row: LeaseRow;
  times: LeaseTimes;
  auditData: { kind: LeaseRow['kind']; node: string; exposure: string | null; ttl: number; ssh_key: string; serial: string };
  token: string;
  certificate: Buffer;
}

/**
 * Signs the lease token and certificate for a decided grant on `node` and builds its row and audit
 * data (`createLease`, and the one-statement path of services/lease-last-seen.ts on the state this
 * replica saw last). The lease never outlives the service token or the login session it is issued
 * through: its expiry (the row's, the certificate's valid-before and the token's exp, all from
 * `expiresAt` here) is capped at the service token's, as the caller's row gave it
 * (`p.serviceTokenExpiresAt`; the insert checks under its lock that the row still has it), or at
 * the session's end, its refresh token's expiry as the access token carries it
 * (`p.sessionEndsAt`; the insert checks under its lock that a live refresh token of the session
 * expires no earlier than the lease, services/lease-insert.ts). A session that ends without
 * anyone ending it (its refresh token expires: a CLI login unused for 30 days, a console
 * session 30 days after sign-in) revokes nothing, so its leases must end by then on their own.
 */
export async function signLease(
  deps: Deps,
  p: UserPrincipal,
  req: LeaseCreate,
  d: { grant: LeaseGrant; node: LeaseNode; openPort: number | null; clientKey: Buffer; now: Date },
): Promise<SignedLease> {
  const { grant, node, now } = d;
  const asked = Math.min(req.ttl_seconds ?? deps.settings.leaseTtl[req.kind], deps.settings.maxLeaseTtl);
  const tokenEnds = p.serviceTokenId ? (p.serviceTokenExpiresAt ?? null) : null;
  const sessionEnds = p.sessionId ? (p.sessionEndsAt ?? null) : null;
  // Whole seconds (the certificate's and the token's unit), rounded down: never past the token or the session.
  const left = (end: Date | null): number => (end ? Math.floor((end.getTime() - now.getTime()) / 1000) : Infinity);
  const ttl = Math.min(asked, left(tokenEnds), left(sessionEnds));
  if (ttl < 1) {
    throw new AppError(
      'TOKEN_INVALID',
      tokenEnds ? 'the service token behind this access token expires now; make a new one' : 'the login session behind this access token ends now; log in again',
    );
  }
  const leaseId = deps.ids.id(LEASE_ID_PREFIX);
  const serial = deps.ids.serial();
  const expiresAt = new Date(now.getTime() + ttl * 1000);
  const [leaseKey, caKey] = await Promise.all([deps.keys.signing('sig'), deps.keys.signing('ssh-ca')]);
  let issued: IssuedLease;
  try {
    issued = await issueLease(
      { lease: leaseKey, ca: caKey },
      {
        issuer: deps.settings.issuer,
        leaseId,
        serial,
        userId: p.userId,
        userName: p.name,
        nodeId: node.id,
        grant,
        clientPublicKey: d.clientKey,
        notBefore: now,
        expiresAt,
      },
    );
  } catch (err) {
    // createLease refuses targets past their bound before this; a lease that still does not fit
    // is refused all the same (nothing is written: the row is inserted after signing), not a 500.
    if (err instanceof LeaseTooLargeError) throw new AppError('LEASE_TOO_LARGE', `the lease would not fit in its certificate: ${err.message}`, { cause: err });
    throw err;
  }
  const row: LeaseRow = {
    id: leaseId,
    kind: req.kind,
    userId: p.userId,
    nodeId: node.id,
    exposure: grant.kind === 'egress' ? null : grant.exposure,
    // expose: the port granted; open: the port X has bound (informational, for clients).
    port: grant.kind === 'expose' ? grant.port : d.openPort,
    targets: grant.kind === 'egress' ? grant.targets : null,
    sshKey: issued.claims.ssh_key,
    serial: serial.toString(),
    serviceTokenId: p.serviceTokenId,
    sessionId: p.sessionId ?? null,
    notBefore: new Date(issued.claims.nbf * 1000),
    expiresAt: new Date(issued.claims.exp * 1000),
    revokedAt: null,
    createdAt: now,
  };
  const auditData = { kind: req.kind, node: node.name, exposure: row.exposure, ttl, ssh_key: row.sshKey, serial: row.serial };
  return { row, times: leaseTimes(row), auditData, token: issued.token, certificate: issued.certificate };
}

/** The answer for a lease that is stored: counted, and the lease with its token, certificate and relay. */
export function leaseIssued(deps: Pick<Deps, 'metrics'>, p: UserPrincipal, node: LeaseNode, signed: SignedLease): LeaseIssued {
  deps.metrics.inc('tunnel_control_leases_issued_total', 'Leases issued by kind', { kind: signed.row.kind });
  return {
    lease: leaseView(signed.row, p.name, node.name, signed.times),
    token: signed.token,
    certificate: formatCertificateLine(signed.certificate, `${p.name}@tunnel`),
    relay: { node_id: node.id, name: node.name, address: node.address, host_key: node.hostKey },
  };
}

const leaseJoin = (deps: Pick<Deps, 'db'>) =>
  deps.db
    .select({ lease: leases, user: users.name, node: nodes.name })
    .from(leases)
    .innerJoin(users, eq(users.id, leases.userId))
    .innerJoin(nodes, eq(nodes.id, leases.nodeId));

/** The caller's leases, newest first (admins: everyone's with `all`; a scoped token: the ones it issued). */
export async function listLeases(
  deps: Pick<Deps, 'db' | 'clock'>,
  p: UserPrincipal,
  q: { all: boolean; active: boolean; limit: number },
): Promise<Lease[]> {
  const conds: SQL[] = [];
  if (q.all) assertAllowed(p, 'lease.list_all');
  else conds.push(eq(leases.userId, p.userId));
  if (p.serviceTokenId) conds.push(eq(leases.serviceTokenId, p.serviceTokenId));
  if (q.active) conds.push(isNull(leases.revokedAt), gt(leases.expiresAt, deps.clock.now()));
  const rows = await leaseJoin(deps)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(desc(leases.createdAt))
    .limit(q.limit);
  return rows.filter((r) => can(p, 'lease.read', r.lease)).map((r) => leaseView(r.lease, r.user, r.node));
}

async function visibleLease(deps: Pick<Deps, 'db'>, p: UserPrincipal, id: string, action: 'lease.read' | 'lease.revoke') {
  const [r] = await leaseJoin(deps).where(eq(leases.id, id)).limit(1);
  if (!r) throw notFound(`lease ${id}`);
  assertAllowed(p, action, r.lease);
  return r;
}

/** One lease the caller may see (others look absent). */
export async function getLease(deps: Pick<Deps, 'db'>, p: UserPrincipal, id: string, action: 'lease.read' | 'lease.revoke' = 'lease.read'): Promise<Lease> {
  const r = await visibleLease(deps, p, id, action);
  return leaseView(r.lease, r.user, r.node);
}

/**
 * Revokes one lease the caller may revoke; returns it as it is now. Another user's (an admin's
 * doing): the admin's row locked first and its role asked again (owner-lock.ts
 * `recheckAdminUnderLock`), so one demoted or disabled meanwhile is refused.
 */
export async function revokeLease(deps: Pick<Deps, 'db' | 'clock'>, p: UserPrincipal, id: string): Promise<Lease> {
  const { lease } = await visibleLease(deps, p, id, 'lease.revoke');
  await revoking(deps, async (tx, revoke) => {
    await recheckAdminUnderLock(tx, p, 'lease.revoke', lease);
    return revoke.leases({ ids: [id] }, p.userId);
  });
  return getLease(deps, p, id, 'lease.revoke');
}
