import { and, eq, gt, inArray, isNull } from 'drizzle-orm';
import type { LeaseCreate, LeaseIssued, Lease } from '../../protocol/api-types.js';
import { parsePublicKeyLine } from '../../protocol/ssh-key.js';
import { formatCertificateLine } from '../../protocol/ssh-cert.js';
import type { LeaseTarget } from '../../protocol/lease-claims.js';
import type { Deps } from '../deps.js';
import { auditEvents, egressTargets, exposures, leases, nodes, revocations } from '../db/schema/index.js';
import type { Principal } from '../http/env.js';
import { assertScope } from '../http/authenticate.js';
import { AppError, notFound } from '../lib/errors.js';
import { issueLease, type LeaseGrant } from '../ca/lease-issuer.js';
import { audit, auditRow } from './audit.js';
import { exposureCurrentNode, isOnline, pickExposeNode } from './node-selection.js';
import { canOpen } from './exposure-access.js';

type LeaseRow = typeof leases.$inferSelect;
type NodeRow = typeof nodes.$inferSelect;

export function leaseView(row: LeaseRow, userName: string, nodeName: string): Lease {
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
    not_before: row.notBefore.toISOString(),
    expires_at: row.expiresAt.toISOString(),
    revoked_at: row.revokedAt ? row.revokedAt.toISOString() : null,
    created_at: row.createdAt.toISOString(),
  };
}

/** Issues a lease: authorization, node choice, token + certificate, row + audit event. */
export async function createLease(deps: Deps, p: Principal, req: LeaseCreate): Promise<LeaseIssued> {
  const now = deps.clock.now();
  let clientKey: Buffer;
  try {
    clientKey = parsePublicKeyLine(req.public_key).publicKey;
  } catch (cause) {
    throw new AppError('VALIDATION_FAILED', 'public_key: not a valid ssh-ed25519 public key', { cause });
  }

  let grant: LeaseGrant;
  let node: NodeRow | undefined;
  let openPort: number | null = null;
  if (req.kind === 'expose' || req.kind === 'open') {
    if (!req.exposure) throw new AppError('VALIDATION_FAILED', `exposure: required for a ${req.kind} lease`);
    if (req.targets) throw new AppError('LEASE_KIND_MISMATCH', `targets: not allowed in a ${req.kind} lease`);
    assertScope(p, req.kind, req.exposure);
    // The exposure with the node holding it now, in one query (open leases go there).
    const [found] = await deps.db
      .select({ exp: exposures, current: nodes })
      .from(exposures)
      .leftJoin(nodes, and(eq(exposures.online, true), eq(nodes.id, exposures.currentNodeId)))
      .where(eq(exposures.name, req.exposure))
      .limit(1);
    const exp = found?.exp;
    if (req.kind === 'expose') {
      if (!exp) throw notFound(`exposure "${req.exposure}" (create it with PUT /v1/exposures/${req.exposure})`);
      if (exp.ownerId !== p.userId && p.role !== 'admin') {
        throw new AppError('FORBIDDEN', `only the owner of "${exp.name}" or an admin may expose it`);
      }
      grant = { kind: 'expose', exposure: exp.name, port: req.port ?? 22 };
      node = await pickExposeNode(deps.db, now, deps.settings.nodeOnlineWindow, exp);
      if (!node) throw new AppError('NO_NODE_AVAILABLE', 'no relay node is online', { retryable: true });
    } else {
      if (req.port !== undefined) throw new AppError('LEASE_KIND_MISMATCH', 'port: only for expose leases');
      if (!exp) throw notFound(`exposure "${req.exposure}"`);
      if (!canOpen(exp, p)) throw new AppError('NOT_IN_ACL', `you are not in the ACL of "${exp.name}"`);
      grant = { kind: 'open', exposure: exp.name };
      // Only while X is connected (or just got its expose lease): never a lease for an offline exposure.
      if (found?.current && exp.onlinePort !== null && isOnline(found.current, now, deps.settings.nodeOnlineWindow)) {
        node = found.current;
        openPort = exp.onlinePort;
      } else {
        const current = await exposureCurrentNode(deps.db, now, deps.settings.nodeOnlineWindow, exp);
        node = current?.node;
        openPort = current?.port ?? null;
      }
      if (!node) throw new AppError('EXPOSURE_OFFLINE', `"${exp.name}" is not online: no tunnel expose is connected`, { retryable: true });
    }
  } else {
    if (!req.targets) throw new AppError('VALIDATION_FAILED', 'targets: required for an egress lease');
    if (req.exposure || req.port !== undefined) throw new AppError('LEASE_KIND_MISMATCH', 'exposure/port: not allowed in an egress lease');
    const names = [...new Set(req.targets)];
    for (const n of names) assertScope(p, 'egress', n);
    const rows = await deps.db.select().from(egressTargets).where(inArray(egressTargets.name, names));
    const missing = names.filter((n) => !rows.some((r) => r.name === n));
    if (missing.length) throw notFound(`egress target "${missing[0]}"`);
    for (const r of rows) {
      if (p.role !== 'admin' && !r.allow.includes(p.name)) throw new AppError('NOT_IN_ACL', `you may not use egress target "${r.name}"`);
    }
    const nodeIds = new Set(rows.map((r) => r.nodeId));
    if (nodeIds.size !== 1) throw new AppError('VALIDATION_FAILED', 'targets: all egress targets of one lease must be on the same node');
    [node] = await deps.db.select().from(nodes).where(eq(nodes.id, rows[0]!.nodeId)).limit(1);
    if (!node) throw new AppError('NO_NODE_AVAILABLE', 'the egress targets\' node is gone');
    grant = { kind: 'egress', targets: rows.map((r): LeaseTarget => ({ host: r.host, port: r.port })) };
  }

  const ttl = Math.min(req.ttl_seconds ?? deps.settings.leaseTtl[req.kind], deps.settings.maxLeaseTtl);
  const leaseId = deps.ids.id('lse');
  const serial = deps.ids.serial();
  const expiresAt = new Date(now.getTime() + ttl * 1000);
  const [leaseKey, caKey] = await Promise.all([deps.keys.signing('sig'), deps.keys.signing('ssh-ca')]);
  const issued = await issueLease(
    { lease: leaseKey, ca: caKey },
    {
      issuer: deps.settings.issuer,
      leaseId,
      serial,
      userId: p.userId,
      userName: p.name,
      nodeId: node.id,
      grant,
      clientPublicKey: clientKey,
      notBefore: now,
      expiresAt,
    },
  );
  const row: LeaseRow = {
    id: leaseId,
    kind: req.kind,
    userId: p.userId,
    nodeId: node.id,
    exposure: grant.kind === 'egress' ? null : grant.exposure,
    // expose: the port granted; open: the port X has bound (informational, for clients).
    port: grant.kind === 'expose' ? grant.port : openPort,
    targets: grant.kind === 'egress' ? grant.targets : null,
    sshKey: issued.claims.ssh_key,
    serial: serial.toString(),
    serviceTokenId: p.serviceTokenId,
    notBefore: new Date(issued.claims.nbf * 1000),
    expiresAt: new Date(issued.claims.exp * 1000),
    revokedAt: null,
    createdAt: now,
  };
  // The lease row and its audit event in one statement, atomic without BEGIN/COMMIT: a
  // data-modifying WITH always runs to completion with the statement that carries it. One
  // round trip instead of four on the hottest write path.
  const insertLease = deps.db
    .$with('new_lease', { id: leases.id })
    .as(deps.db.insert(leases).values(row).returning({ id: leases.id }).getSQL());
  await deps.db
    .with(insertLease)
    .insert(auditEvents)
    .values(
      auditRow(now, {
        type: 'lease.issued',
        actor: p.userId,
        subject: leaseId,
        data: { kind: req.kind, node: node.name, exposure: row.exposure, ttl, ssh_key: row.sshKey, serial: row.serial },
      }),
    );
  deps.metrics.inc('tunnel_control_leases_issued_total', 'Leases issued by kind', { kind: req.kind });
  return {
    lease: leaseView(row, p.name, node.name),
    token: issued.token,
    certificate: formatCertificateLine(issued.certificate, `${p.name}@tunnel`),
    relay: { node_id: node.id, name: node.name, address: node.address, host_key: node.hostKey },
  };
}

/**
 * Revokes leases: marks them and appends them to their nodes' revocation feeds, in one
 * transaction. Already revoked or expired leases are left alone. Returns the revoked ids.
 */
export async function revokeLeases(
  deps: Pick<Deps, 'db' | 'clock'>,
  where: { ids?: string[]; userId?: string; exposure?: string; nodeId?: string },
  actor: string | null,
): Promise<string[]> {
  const now = deps.clock.now();
  const conds = [isNull(leases.revokedAt), gt(leases.expiresAt, now)];
  if (where.ids) conds.push(inArray(leases.id, where.ids));
  if (where.userId) conds.push(eq(leases.userId, where.userId));
  if (where.exposure) conds.push(eq(leases.exposure, where.exposure));
  if (where.nodeId) conds.push(eq(leases.nodeId, where.nodeId));
  return deps.db.transaction(async (tx) => {
    const revoked = await tx
      .update(leases)
      .set({ revokedAt: now })
      .where(and(...conds))
      .returning({ id: leases.id, nodeId: leases.nodeId, expiresAt: leases.expiresAt });
    if (revoked.length) {
      await tx
        .insert(revocations)
        .values(revoked.map((r) => ({ leaseId: r.id, nodeId: r.nodeId, expiresAt: r.expiresAt, createdAt: now })));
      for (const r of revoked) await audit(tx, now, { type: 'lease.revoked', actor, subject: r.id });
    }
    return revoked.map((r) => r.id);
  });
}
