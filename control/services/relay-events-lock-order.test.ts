/**
 * Two event batches of one relay applied at once, naming the same connections or exposures in
 * opposite order, must not deadlock (services/nodes.ts recordEvents). Each batch is one
 * transaction that wrote its rows in the batch's order, so the first could hold a row the second
 * waits for while waiting for one the second holds; Postgres then fails one (40P01) and that
 * relay's batch is refused. Now each batch writes its connections in session order, then its
 * exposures in name order.
 *
 * Made deterministic on a real Postgres with one more connection: it holds a row both batches
 * name in the middle (batch A: 1, 3, 2; batch B: 2, 3, 1). A takes 1 and waits for 3, B takes 2
 * and waits for 3; once 3 is let go, A waits for B's 2 and B for A's 3 on the old code.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePostgres } from '../testing/databases.js';
import { holdRows, lockWaiters, until } from '../testing/row-locks.js';
import { enrollNode, uniq, type TestNode } from '../testing/fixtures.js';
import { connections, exposures } from '../db/schema/index.js';
import type { ConnectionEvent } from '../../protocol/node-api.js';
import type { NodePrincipal } from './authz.js';
import { recordEvents } from './nodes.js';

const makeApp = usePostgres();

describe('concurrent event batches of one relay do not deadlock (Postgres)', { skip: makeApp.unavailable }, () => {
  let t: TestApp;
  let node: TestNode;
  let principal: NodePrincipal;
  let ownerId: string;

  before(async () => {
    t = await makeApp();
    const admin = await t.user(uniq('admin'), 'admin');
    ownerId = admin.id;
    node = await enrollNode(t, admin.token);
    principal = { kind: 'node', nodeId: node.id, name: node.name };
  });

  /** Applies batches A and B at once while `row` (named by both, in the middle) is held, then lets it go; both must succeed. */
  async function race(hold: Parameters<typeof holdRows>[1], a: ConnectionEvent[], b: ConnectionEvent[]): Promise<void> {
    const held = await holdRows(t, hold);
    let released = false;
    const results: Promise<void>[] = [];
    try {
      const waiting = await lockWaiters(t);
      results.push(recordEvents(t.deps, principal, a));
      await until('batch A waits', async () => (await lockWaiters(t)) > waiting);
      results.push(recordEvents(t.deps, principal, b));
      await until('batch B waits', async () => (await lockWaiters(t)) > waiting + 1);
      await held.release();
      released = true;
    } finally {
      if (!released) await held.release();
    }
    const settled = await Promise.allSettled(results);
    for (const s of settled) assert.equal(s.status, 'fulfilled', s.status === 'rejected' ? String((s.reason as Error)?.cause ?? s.reason) : '');
  }

  it('closing the same connections in opposite order: both batches recorded', async () => {
    const s = [1, 2, 3].map(() => uniq('sess'));
    const at = t.clock.now();
    await t.deps.db.insert(connections).values(s.map((sessionId) => ({ nodeId: node.id, sessionId, openedAt: at })));
    const close = (i: number, bytes: number): ConnectionEvent => ({ type: 'conn_close', at: at.toISOString(), session_id: s[i]!, bytes_in: bytes });
    await race(
      sql`select session_id from connections where node_id = ${node.id} and session_id = ${s[2]!} for update`,
      [close(0, 1), close(2, 1), close(1, 1)],
      [close(1, 2), close(2, 2), close(0, 2)],
    );
    const rows = await t.deps.db.select().from(connections).where(and(eq(connections.nodeId, node.id), inArray(connections.sessionId, s)));
    assert.equal(rows.length, 3);
    assert.ok(rows.every((r) => r.closedAt !== null && (r.bytesIn === 1 || r.bytesIn === 2)), JSON.stringify(rows));
  });

  it('taking the same exposures offline in opposite order: both batches recorded', async () => {
    const names = [1, 2, 3].map(() => uniq('exp'));
    const now = t.clock.now();
    await t.deps.db
      .insert(exposures)
      .values(names.map((name) => ({ name, ownerId, allow: [], currentNodeId: node.id, online: true, createdAt: now, updatedAt: now })));
    const off = (i: number): ConnectionEvent => ({ type: 'exposure_offline', at: now.toISOString(), exposure: names[i]! });
    await race(sql`select name from exposures where name = ${names[2]!} for update`, [off(0), off(2), off(1)], [off(1), off(2), off(0)]);
    const rows = await t.deps.db.select().from(exposures).where(inArray(exposures.name, names));
    assert.ok(rows.length === 3 && rows.every((r) => !r.online), JSON.stringify(rows));
  });
});
