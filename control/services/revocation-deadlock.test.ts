/**
 * Two revocations whose leases overlap must not deadlock (services/lease-revocation.ts). They
 * marked their leases with one UPDATE each, which locks rows in whatever order its plan reads
 * them: by a user's index (ordered by expiry) for a disabled user, by the primary key for a list
 * of ids. Two such revocations could each hold a row the other waits for; Postgres then fails
 * one (40P01) and its change is refused. Now each locks its rows in id order.
 *
 * Made deterministic on a real Postgres with two more connections: each holds one of the two
 * leases (B, whose id sorts last but which expires first and is stored first; A) while the two
 * revocations (the user's leases; the ids A and B) start and wait, then both let go. Enough other
 * leases make the planner use the indexes, so the old statements locked B then A, and A then B.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { inArray, sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePostgres } from '../testing/databases.js';
import { holdRows, lockWaiters, until } from '../testing/row-locks.js';
import { enrollNode, uniq, type TestNode } from '../testing/fixtures.js';
import { leases, revocations } from '../db/schema/index.js';
import { revokeLeases } from './lease-revocation.js';

/** Locks lease `id` in an open transaction on a connection of its own until `release()`. */
const holdLease = (t: TestApp, id: string) => holdRows(t, sql`select id from leases where id = ${id} for update`);

const makeApp = usePostgres();

describe('overlapping revocations do not deadlock (Postgres)', { skip: makeApp.unavailable }, () => {
  let t: TestApp;
  let node: TestNode;

  before(async () => {
    t = await makeApp();
    const admin = await t.user(uniq('admin'), 'admin');
    node = await enrollNode(t, admin.token);
    // Other users' leases, so that the planner reads a user's leases and a list of ids through
    // their indexes instead of scanning a one-page table.
    const other = await t.user(uniq('other'), 'member');
    const now = t.clock.now();
    await t.deps.db.execute(sql`insert into leases (id, kind, user_id, node_id, exposure, ssh_key, serial, not_before, expires_at, created_at)
      select 'lse_f' || lpad(g::text, 31, '0'), 'expose', ${other.id}, ${node.id}, 'filler', 'SHA256:x', g::text, ${now.toISOString()}::timestamptz, ${new Date(now.getTime() + 3_600_000).toISOString()}::timestamptz, ${now.toISOString()}::timestamptz
      from generate_series(1, 5000) g`);
  });

  it('a user disabled while a list of leases is revoked: both finish, each lease revoked once', async () => {
    const user = await t.user(uniq('u'), 'member');
    const now = t.clock.now();
    const hex = () => uniq('').padStart(8, '0');
    const tag = hex();
    const A = `lse_0${tag}${'0'.repeat(23)}`;
    const B = `lse_e${tag}${'0'.repeat(23)}`;
    const row = (id: string, expiresInMs: number) => ({
      id,
      kind: 'expose' as const,
      userId: user.id,
      nodeId: node.id,
      exposure: 'overlap',
      sshKey: 'SHA256:x',
      serial: id,
      notBefore: now,
      expiresAt: new Date(now.getTime() + expiresInMs),
      createdAt: now,
    });
    // B first on disk and first to expire; A first by id.
    await t.deps.db.insert(leases).values(row(B, 1_800_000));
    await t.deps.db.insert(leases).values(row(A, 3_600_000));
    await t.deps.db.execute(sql`analyze leases`);

    const holdA = await holdLease(t, A);
    const holdB = await holdLease(t, B);
    let released = false;
    const results: Promise<string[]>[] = [];
    try {
      const waiting = await lockWaiters(t);
      results.push(revokeLeases(t.deps, { userId: user.id }, null, 'user_disabled'));
      await until('the first revocation waits', async () => (await lockWaiters(t)) > waiting);
      results.push(revokeLeases(t.deps, { ids: [A, B] }, null, 'revoked'));
      await until('the second revocation waits', async () => (await lockWaiters(t)) > waiting + 1);
      await holdB.release();
      await holdA.release();
      released = true;
    } finally {
      if (!released) await Promise.all([holdB.release(), holdA.release()]);
    }
    const settled = await Promise.allSettled(results);
    for (const s of settled) assert.equal(s.status, 'fulfilled', s.status === 'rejected' ? String((s.reason as Error)?.cause ?? s.reason) : '');
    const revoked = settled.flatMap((s) => (s.status === 'fulfilled' ? s.value : []));
    assert.deepEqual(revoked.sort(), [A, B], 'each lease revoked once, by one of them');
    const feed = await t.deps.db.select().from(revocations).where(inArray(revocations.leaseId, [A, B]));
    assert.equal(feed.length, 2, 'each in its relay feed once');
  });
});
