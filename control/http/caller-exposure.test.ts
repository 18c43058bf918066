/**
 * Lease issuance reads the exposure the request names in the guard's caller lookup (issue 11: one
 * round trip less per lease). A caller that is not live (disabled user, ended session, revoked
 * service token, unknown user) must not learn from it whether the exposure exists: the statement
 * must not even look the exposure up for such a caller. Checked on the statement's executed plan
 * (EXPLAIN ANALYZE: the scan of `exposures` runs for a live caller, never for a dead one), and
 * over HTTP: the answers to a dead caller are the same for an exposure that exists and one that
 * does not, and a live caller's lease follows the exposure as it is at that moment. PGlite and
 * a real Postgres.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eq, fillPlaceholders, sql } from 'drizzle-orm';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { enrollNode, exposeOn, heartbeat, newClientKey, putExposure, uniq } from '../testing/fixtures.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import type { TestApp } from '../testing/test-app.js';
import { users } from '../db/schema/index.js';
import { rateWindow } from '../services/rate-limit.js';
import { countedCallerQuery } from './authenticate.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Loops': number;
  Plans?: PlanNode[];
}

function* walk(node: PlanNode): Generator<PlanNode> {
  yield node;
  for (const child of node.Plans ?? []) yield* walk(child);
}

/** A parameter as an SQL literal (the test's own values: text, null). */
const literal = (v: unknown): string => (v === null ? 'null' : `'${String(v).replaceAll("'", "''")}'`);

/** How many times the executed plan of the caller lookup scanned `exposures` (summed over scans). */
async function exposureScans(t: TestApp, sub: string, exposure: string): Promise<number> {
  const now = t.clock.now();
  const query = countedCallerQuery(t.deps.db).getQuery();
  const params = fillPlaceholders(query.params, {
    sub,
    sid: null,
    sti: null,
    now: now.toISOString(),
    key: `plan-test:${sub}`,
    windowStart: rateWindow(now).toISOString(),
    exposure,
  });
  const text = query.sql.replace(/\$(\d+)/g, (_, n: string) => literal(params[Number(n) - 1]));
  const result = (await t.deps.db.execute(sql.raw(`explain (analyze, costs off, timing off, format json) ${text}`))) as unknown;
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Record<string, unknown>[];
  const cell = Object.values(rows[0]!)[0];
  const [plan] = (typeof cell === 'string' ? JSON.parse(cell) : cell) as [{ Plan: PlanNode }];
  const scans = [...walk(plan.Plan)].filter((n) => n['Relation Name'] === 'exposures');
  assert.ok(scans.length > 0, 'the plan reads exposures');
  return scans.reduce((sum, n) => sum + n['Actual Loops'], 0);
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`lease issuance reads the exposure with the caller, only for a live caller (${name})`, { skip: makeApp.unavailable }, () => {
    it('the caller lookup scans exposures for a live caller and never for a dead or unknown one', async () => {
      const t = await makeApp();
      const owner = await t.user(uniq('own'), 'member');
      const exposure = uniq('exp');
      await putExposure(t, owner.token, exposure);
      assert.equal(await exposureScans(t, owner.id, exposure), 1, 'live: read');
      await t.deps.db.update(users).set({ disabled: true }).where(eq(users.id, owner.id));
      assert.equal(await exposureScans(t, owner.id, exposure), 0, 'disabled: not read');
      assert.equal(await exposureScans(t, 'usr_nobody', exposure), 0, 'unknown user: not read');
    });

    it('a dead caller gets the same answer whether the exposure exists or not; a live one sees its current state', async () => {
      const t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      const node = await enrollNode(t, admin.token);
      const owner = await t.user(uniq('own'), 'member');
      const member = await t.user(uniq('mem'), 'member');
      const exposure = uniq('exp');
      await putExposure(t, owner.token, exposure, [member.name]);
      await exposeOn(t, admin.token, node, owner.token, exposure);
      await heartbeat(t, node, [{ name: exposure, port: 22 }]);
      const issue = (token: string, name: string) => t.call('POST', '/v1/leases', { token, body: { kind: 'open', exposure: name, public_key: newClientKey().line } });

      const live = await issue(member.token, exposure);
      assertOk(live, 201);
      assert.equal(live.body.relay.node_id, node.id);
      assertProblem(await issue(member.token, uniq('missing')), 404, 'NOT_FOUND');

      // Taken off the allow list: the next lease is refused at once (nothing kept between requests).
      await putExposure(t, owner.token, exposure, []);
      assertProblem(await issue(member.token, exposure), 403, 'NOT_IN_ACL');

      await t.deps.db.update(users).set({ disabled: true }).where(eq(users.id, member.id));
      const existing = await issue(member.token, exposure);
      const missing = await issue(member.token, uniq('missing'));
      assertProblem(existing, 401, 'TOKEN_INVALID');
      assertProblem(missing, 401, 'TOKEN_INVALID');
      assert.equal(existing.body.detail, missing.body.detail);
    });
  });
}

dbSuite('pglite', usePglite());
dbSuite('postgres', usePostgres());
