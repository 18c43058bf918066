/**
 * A lease racing a revocation (the race found in the stop-19 note): a lease request whose read of
 * the caller or the exposure predates a revocation's commit, but whose lease row would land after
 * the revocation's scan of the leases, must be refused, or be issued and show up revoked (its row
 * marked and in its relay's revocation feed); a lease the relay accepts until it expires is what
 * must never come out.
 *
 * Made deterministic on a real Postgres (PGlite has one connection and cannot race): a second
 * connection holds the caller's `rate_limits` row in an open transaction, which any lease
 * request's counting statement waits for, after its snapshot was taken; the revocation is sent
 * while the lease waits, and runs until it either answers or waits itself (for the lease's row
 * locks); then the hold is released. Both the one-statement path (services/lease-last-seen.ts,
 * a caller and exposure seen at an earlier lease) and the usual path (a first lease; an expose
 * lease) are raced; a logout revokes its session's leases, so it is raced like the others.
 */
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import { eq, sql } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePostgres } from '../testing/databases.js';
import { holdRows, lockWaiters, until } from '../testing/row-locks.js';
import { assertOk } from '../testing/problem.js';
import { enrollNode, newClientKey, onlineExposure, serviceAccess, tokenFor, uniq, type TestNode } from '../testing/fixtures.js';
import { leases } from '../db/schema/index.js';
import { rateWindow } from './rate-limit.js';

type User = { id: string; name: string; token: string };
type Res = Awaited<ReturnType<TestApp['call']>>;
const PASSWORD = 'race test password';

/** How many leases the one-statement path tried so far in this app (issued, or found the state changed). */
function oneStatementTries(t: TestApp): number {
  const text = t.deps.metrics.render();
  return [...text.matchAll(/^tunnel_control_lease_last_seen_total\{outcome="[a-z]+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

/**
 * Holds user `userId`'s lease rate-limit row in an open transaction on a connection of its own
 * until `release()`: every lease request of theirs waits in its counting statement meanwhile.
 */
const holdRateLimit = (t: TestApp, userId: string) =>
  holdRows(
    t,
    sql`insert into rate_limits (key, window_start, count) values (${`lease:${userId}`}, ${rateWindow(t.clock.now()).toISOString()}::timestamptz, 0)
      on conflict (key) do update set count = rate_limits.count`,
  );

/**
 * The race: the lease request is sent and waits on the held counter; the revocation is sent and
 * runs until it answered or waits itself; then the hold goes. Returns both answers, and whether
 * the revocation answered before the lease could go on.
 */
async function race(t: TestApp, userId: string, lease: () => Promise<Res>, revoke: () => Promise<Res>) {
  const hold = await holdRateLimit(t, userId);
  let leaseRes: Promise<Res> | undefined;
  let revokeRes: Promise<Res> | undefined;
  let revokedFirst = false;
  try {
    const waitingBefore = await lockWaiters(t);
    leaseRes = lease();
    await until('the lease request waits on the held counter', async () => (await lockWaiters(t)) > waitingBefore);
    let settled = false;
    revokeRes = revoke().finally(() => (settled = true));
    await until('the revocation answered or waits', async () => settled || (await lockWaiters(t)) > waitingBefore + 1);
    revokedFirst = settled;
  } finally {
    await hold.release();
  }
  return { lease: await leaseRes, revoke: await revokeRes, revokedFirst };
}

const makeApp = usePostgres();

describe('a lease racing a revocation (Postgres)', { skip: makeApp.unavailable }, () => {
  let t: TestApp;
  let admin: User, owner: User, friend: User;
  let node: TestNode;
  let exposure: string;
  const openWith = (token: string) => () => t.call('POST', '/v1/leases', { token, body: { kind: 'open', exposure, public_key: newClientKey().line } });

  before(async () => {
    t = await makeApp({ settings: { leaseRateLimit: 100 } });
    admin = await t.user(uniq('admin'), 'admin');
    owner = await t.user(uniq('xavier'), 'member');
    node = await enrollNode(t, admin.token);
  });

  beforeEach(async () => {
    t.clock.advance(61_000);
    admin.token = await tokenFor(t, admin, 'admin');
    owner.token = await tokenFor(t, owner, 'member');
    friend = await t.user(uniq('yara'), 'member', PASSWORD);
    exposure = await onlineExposure(t, node, admin.token, owner.token, [friend.name]);
  });

  /** The lease was refused; or it was issued, and is revoked: marked, and in its relay's feed. */
  async function assertRefusedOrRevoked(res: Res, what: string): Promise<void> {
    if (res.status !== 201) {
      assert.ok(res.status >= 400 && res.status < 500, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
      return;
    }
    const id = res.body.lease.id as string;
    const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, id));
    assert.ok(row?.revokedAt, `${what}: lease ${id} was issued after the revocation and is not revoked`);
    const feed = await t.call('GET', '/v1/nodes/self/revocations', { token: node.token });
    assertOk(feed);
    assert.ok(
      (feed.body.revocations as { lease_id: string }[]).some((r) => r.lease_id === id),
      `${what}: lease ${id} is not in its relay's revocation feed`,
    );
  }

  /** A first lease, so that the next one takes the one-statement path. */
  async function seen(token: string): Promise<void> {
    assertOk(await openWith(token)(), 201);
  }

  /** The next lease with `token`, asserted to have been tried by the one-statement path. */
  const oneStatement = (token: string) => async () => {
    const before = oneStatementTries(t);
    const res = await openWith(token)();
    assert.equal(oneStatementTries(t), before + 1, 'the lease went through the one-statement path');
    return res;
  };

  it('one-statement path: taken off the allow list', async () => {
    const token = await tokenFor(t, friend, 'member');
    await seen(token);
    const r = await race(t, friend.id, oneStatement(token), () => t.call('PUT', `/v1/exposures/${exposure}`, { token: owner.token, body: { allow: [] } }));
    assertOk(r.revoke);
    await assertRefusedOrRevoked(r.lease, 'allow list');
  });

  it('one-statement path: the user disabled', async () => {
    const token = await tokenFor(t, friend, 'member');
    await seen(token);
    const r = await race(t, friend.id, oneStatement(token), () => t.call('PATCH', `/v1/users/${friend.name}`, { token: admin.token, body: { disabled: true } }));
    assertOk(r.revoke);
    await assertRefusedOrRevoked(r.lease, 'disabled');
  });

  it('one-statement path: the service token revoked, or its scopes narrowed', async () => {
    for (const change of ['revoke', 'rescope'] as const) {
      const userToken = await tokenFor(t, friend, 'member');
      const st = await serviceAccess(t, userToken, [`open:${exposure}`]);
      await seen(st.accessToken);
      const r = await race(t, friend.id, oneStatement(st.accessToken), () =>
        change === 'revoke'
          ? t.call('DELETE', `/v1/service-tokens/${st.id}`, { token: userToken })
          : t.call('PATCH', `/v1/service-tokens/${st.id}`, { token: userToken, body: { scopes: ['open:elsewhere'] } }),
      );
      assertOk(r.revoke);
      await assertRefusedOrRevoked(r.lease, change);
    }
  });

  it('one-statement path: the exposure deleted', async () => {
    const token = await tokenFor(t, friend, 'member');
    await seen(token);
    const r = await race(t, friend.id, oneStatement(token), () => t.call('DELETE', `/v1/exposures/${exposure}`, { token: owner.token }));
    assert.equal(r.revoke.status, 204);
    await assertRefusedOrRevoked(r.lease, 'exposure deleted');
  });

  it('one-statement path: logged out (the session\'s leases end with it)', async () => {
    const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: friend.name, password: PASSWORD } });
    assertOk(login);
    const token = login.body.access_token as string;
    await seen(token);
    const r = await race(t, friend.id, oneStatement(token), () => t.call('POST', '/v1/auth/logout', { token }));
    assert.equal(r.revoke.status, 204);
    await assertRefusedOrRevoked(r.lease, 'logout');
  });

  it('usual path (a first lease): logged out', async () => {
    const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: friend.name, password: PASSWORD } });
    assertOk(login);
    const token = login.body.access_token as string;
    const r = await race(t, friend.id, openWith(token), () => t.call('POST', '/v1/auth/logout', { token }));
    assert.equal(r.revoke.status, 204);
    await assertRefusedOrRevoked(r.lease, 'logout');
  });

  it('usual path (a first lease): taken off the allow list', async () => {
    const token = await tokenFor(t, friend, 'member');
    const r = await race(t, friend.id, openWith(token), () => t.call('PUT', `/v1/exposures/${exposure}`, { token: owner.token, body: { allow: [] } }));
    assertOk(r.revoke);
    await assertRefusedOrRevoked(r.lease, 'allow list');
  });

  it('usual path (a first lease): the user disabled', async () => {
    const token = await tokenFor(t, friend, 'member');
    const r = await race(t, friend.id, openWith(token), () => t.call('PATCH', `/v1/users/${friend.name}`, { token: admin.token, body: { disabled: true } }));
    assertOk(r.revoke);
    await assertRefusedOrRevoked(r.lease, 'disabled');
  });

  it('usual path: a change that still allows the lease (someone added to the allow list) gets it, decided again, and it stays', async () => {
    const token = await tokenFor(t, friend, 'member');
    const other = await t.user(uniq('zoe'), 'member');
    const r = await race(t, friend.id, openWith(token), () =>
      t.call('PUT', `/v1/exposures/${exposure}`, { token: owner.token, body: { allow: [friend.name, other.name] } }),
    );
    assertOk(r.revoke);
    assertOk(r.lease, 201);
    const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, r.lease.body.lease.id as string));
    assert.equal(row?.revokedAt, null);
  });

  it('usual path (an expose lease): the exposure deleted', async () => {
    const expose = () => t.call('POST', '/v1/leases', { token: owner.token, body: { kind: 'expose', exposure, public_key: newClientKey().line } });
    const r = await race(t, owner.id, expose, () => t.call('DELETE', `/v1/exposures/${exposure}`, { token: owner.token }));
    assert.equal(r.revoke.status, 204);
    await assertRefusedOrRevoked(r.lease, 'exposure deleted');
  });
});
