/**
 * preparedPerDb's direct execution on postgres.js (issue 11) answers exactly as drizzle's own
 * `execute` does for the same statement: the same rows (nested objects, decoded timestamps and
 * jsonb, a left-joined table with no row as null, a subquery's fields), the same errors. Each
 * statement is prepared twice on one real Postgres, once through preparedPerDb and once with
 * plain `.prepare()`, and both run with the same values.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { and, DrizzleQueryError, eq, sql } from 'drizzle-orm';
import { usePostgres } from '../testing/databases.js';
import { exposures, nodes, rateLimits, users } from './schema/index.js';
import { onePerPlaceholder, preparedPerDb } from './prepared.js';
import type { Db } from './client.js';

const p = sql.placeholder;
const makeApp = usePostgres();

/** Users with their exposures (left join: none is null) and each exposure's node through a subquery. */
function joined(db: Db, name: string) {
  const exp = db.select().from(exposures).where(eq(exposures.ownerId, users.id)).as('exp');
  return db
    .select({
      user: { id: users.id, name: users.name, created: users.createdAt },
      disabled: users.disabled,
      since: sql<Date | null>`${p('since')}::timestamptz`.mapWith(users.createdAt),
      exposure: { name: exp.name, allow: exp.allow, statusAt: exp.statusAt },
      node: { id: nodes.id, lastSeenAt: nodes.lastSeenAt },
    })
    .from(users)
    .leftJoinLateral(exp, sql`true`)
    .leftJoin(nodes, and(eq(nodes.id, exp.currentNodeId), eq(exp.online, true)))
    .where(and(eq(users.role, p('role')), sql`${users.createdAt} >= ${p('after')}::timestamptz`))
    .orderBy(users.name, exp.name)
    .prepare(name);
}

describe('preparedPerDb on Postgres: direct execution', { skip: makeApp.unavailable }, () => {
  it('gives the rows drizzle gives, for joins, subqueries, decoders, and statements without rows', async () => {
    const t = await makeApp();
    const db = t.deps.db;
    const at = new Date('2026-01-02T03:04:05.678Z');
    await db.insert(users).values([
      { id: 'usr_a', name: 'alice', role: 'member', createdAt: at },
      { id: 'usr_b', name: 'bob', role: 'member', createdAt: at },
      { id: 'usr_c', name: 'carol', role: 'admin', createdAt: at },
    ]);
    await db.insert(nodes).values({ id: 'nod_1', name: 'n1', address: '127.0.0.1:2222', hostKey: 'ssh-ed25519 AAAA', tokenHash: 'h', enrolledAt: at, lastSeenAt: at });
    await db.insert(exposures).values([
      { name: 'web', ownerId: 'usr_a', allow: ['bob', 'carol'], currentNodeId: 'nod_1', online: true, onlinePort: 22, statusAt: at, createdAt: at, updatedAt: at },
      { name: 'db', ownerId: 'usr_a', allow: [], createdAt: at, updatedAt: at },
    ]);
    const direct = preparedPerDb((d) => joined(d, 'direct_joined'))(db);
    const plain = joined(db, 'plain_joined');
    assert.notEqual(direct.execute, plain.execute, 'preparedPerDb runs postgres.js statements directly');
    for (const values of [
      { role: 'member', after: '2000-01-01T00:00:00Z', since: at.toISOString() },
      { role: 'member', after: '2000-01-01T00:00:00Z', since: null },
      { role: 'admin', after: '2000-01-01T00:00:00Z', since: null },
      { role: 'member', after: '2100-01-01T00:00:00Z', since: null },
    ]) {
      const got = await direct.execute(values);
      assert.deepEqual(got, await plain.execute(values), JSON.stringify(values));
      // The second run of each (a named statement the connection already has) answers the same.
      assert.deepEqual(await direct.execute(values), got);
    }
    const rows = await direct.execute({ role: 'member', after: '2000-01-01T00:00:00Z', since: at.toISOString() });
    assert.deepEqual(
      rows.map((r) => [r.user.name, r.exposure?.name ?? null, r.node?.id ?? null]),
      [
        ['alice', 'db', null],
        ['alice', 'web', 'nod_1'],
        ['bob', null, null],
      ],
    );
    assert.ok(rows[0]!.user.created instanceof Date && rows[0]!.since instanceof Date && rows[1]!.exposure!.statusAt instanceof Date);
    assert.deepEqual(rows[1]!.exposure!.allow, ['bob', 'carol']);

    // An insert with an encoded placeholder and no result fields returns what drizzle returns.
    const insert = (name: string) =>
      db
        .insert(rateLimits)
        .values({ key: p('key'), windowStart: p('windowStart'), count: 1 })
        .prepare(name);
    const directInsert = preparedPerDb(() => insert('direct_insert'))(db);
    const got = (await directInsert.execute({ key: 'k1', windowStart: at })) as unknown as { count: number };
    const want = (await insert('plain_insert').execute({ key: 'k2', windowStart: at })) as unknown as { count: number };
    assert.equal(got.count, 1);
    assert.equal(got.count, want.count);
    assert.deepEqual(
      (await db.select().from(rateLimits).orderBy(rateLimits.key)).map((r) => [r.key, r.windowStart.toISOString(), r.count]),
      [
        ['k1', at.toISOString(), 1],
        ['k2', at.toISOString(), 1],
      ],
    );
  });

  it('fails as drizzle does: a missing placeholder by name, a database error as DrizzleQueryError with the driver\'s error as cause', async () => {
    const t = await makeApp();
    const db = t.deps.db;
    const direct = preparedPerDb((d) => joined(d, 'direct_errors'))(db);
    await assert.rejects(direct.execute({ role: 'member', since: null }), /No value for placeholder "after" was provided/);
    const err = await direct.execute({ role: 'member', after: 'not a time', since: null }).then(
      () => assert.fail('a bad timestamp must fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof DrizzleQueryError, String(err));
    assert.equal((err.cause as { code?: string }).code, '22007');
  });

  it('sends one parameter per placeholder: every use of one becomes the same $n, with the same answers', async () => {
    const t = await makeApp();
    const db = t.deps.db;
    const at = new Date('2026-01-02T03:04:05.678Z');
    await db.insert(users).values([
      { id: 'usr_a', name: 'alice', role: 'member', createdAt: at },
      { id: 'usr_b', name: 'bob', role: 'admin', createdAt: at },
    ]);
    const twice = (d: Db, name: string) =>
      d
        .select({ name: users.name, asked: sql<string>`${p('name')}::text`, role: users.role })
        .from(users)
        .where(and(eq(users.name, p('name')), sql`(${p('role')}::text is null or ${users.role} = ${p('role')})`, sql`${users.name} <> 'x$1'`))
        .prepare(name);
    const direct = preparedPerDb((d) => twice(d, 'direct_twice'))(db);
    const plain = twice(db, 'plain_twice');
    for (const values of [
      { name: 'alice', role: null },
      { name: 'bob', role: 'admin' },
      { name: 'bob', role: 'member' },
    ]) assert.deepEqual(await direct.execute(values), await plain.execute(values), JSON.stringify(values));
    assert.deepEqual(await direct.execute({ name: 'bob', role: null }), [{ name: 'bob', asked: 'bob', role: 'admin' }]);

    // The rewrite itself: uses of one placeholder with one encoder share a number; other
    // parameters keep their own; `$n` in quotes is not a parameter; anything else stays as it was.
    const ph = (name: string, encode: unknown = null) => ({ name, encode });
    assert.deepEqual(onePerPlaceholder(`select $1, '$2', "$3", $2 where $3 = $4`, [ph('a'), ph('b'), ph('a'), null]), {
      queryString: `select $1, '$2', "$3", $2 where $1 = $3`,
      kept: [0, 1, 3],
    });
    const column = {};
    assert.deepEqual(onePerPlaceholder('$1 $2 $3', [ph('a'), ph('a', column), ph('a', column)]), { queryString: '$1 $2 $2', kept: [0, 1] });
    for (const [text, named] of [
      ['$1 $2', [ph('a')]],
      ['$2 $1', [ph('a'), ph('a')]],
      ['$1 $$x$$', [ph('a')]],
    ] as const) assert.deepEqual(onePerPlaceholder(text, named), { queryString: text, kept: named.map((_, i) => i) });
  });
});
