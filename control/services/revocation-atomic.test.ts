/**
 * A state change that ends grants and the revocation of the leases it ends commit together or
 * not at all (services/lease-revocation.ts `revoking`). They were two transactions: a crash or an
 * error after the change committed and before its revocation did left the user disabled (the
 * token revoked, the exposure deleted, the allow list shrunk, the session ended) and its leases
 * valid at the relays until they expired. Here a failure is injected at the revocation (a trigger
 * that raises when a lease row is marked, or when the revocation feed is written, the
 * transaction's last write): the change must not be there either, and the lease stays active;
 * without the failure the same change goes through and revokes it. PGlite and Postgres.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { eq, sql } from 'drizzle-orm';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import type { TestApp } from '../testing/test-app.js';
import { assertOk } from '../testing/problem.js';
import { enrollNode, exposeOn, heartbeat, issueLease, putExposure, serviceAccess, uniq, type TestNode } from '../testing/fixtures.js';
import { exposures, leases, revocations, serviceTokens, users } from '../db/schema/index.js';

type Res = Awaited<ReturnType<TestApp['call']>>;
const PASSWORD = 'atomic test password';

/** Where the failure is injected: the statement a trigger makes fail. */
const FAILURES = {
  'marking the leases revoked': 'before update on leases',
  'writing the revocation feed': 'before insert on revocations',
} as const;

async function failing<T>(t: TestApp, on: string, fn: () => Promise<T>): Promise<T> {
  await t.deps.db.execute(sql.raw(`create or replace function inject_failure() returns trigger language plpgsql as $$ begin raise exception 'injected failure'; end $$`));
  await t.deps.db.execute(sql.raw(`create trigger inject_failure ${on} for each row execute function inject_failure()`));
  try {
    return await fn();
  } finally {
    await t.deps.db.execute(sql.raw(`drop trigger inject_failure on ${on.split(' ').pop()}`));
  }
}

interface Case {
  /** The lease the change must revoke. */
  lease: string;
  /** The change, through the API. */
  change(): Promise<Res>;
  /** Asserts the change is not there. */
  notChanged(): Promise<void>;
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`a change and the revocation of its leases commit together (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let admin: { id: string; name: string; token: string };
    let node: TestNode;

    const setups: Record<string, () => Promise<Case>> = {
      'disabling a user': async () => {
        const u = await t.user(uniq('dis'), 'member');
        const exposure = uniq('dis-');
        await putExposure(t, u.token, exposure);
        const { lease } = await issueLease(t, u.token, { kind: 'expose', exposure });
        return {
          lease: lease.id,
          change: () => t.call('DELETE', `/v1/users/${u.name}`, { token: admin.token }),
          notChanged: async () => {
            const [row] = await t.deps.db.select().from(users).where(eq(users.id, u.id));
            assert.equal(row?.disabled, false, 'the user is not disabled');
          },
        };
      },
      'revoking a service token': async () => {
        const exposure = uniq('st-');
        await putExposure(t, admin.token, exposure);
        const st = await serviceAccess(t, admin.token, [`expose:${exposure}`]);
        const { lease } = await issueLease(t, st.accessToken, { kind: 'expose', exposure });
        return {
          lease: lease.id,
          change: () => t.call('DELETE', `/v1/service-tokens/${st.id}`, { token: admin.token }),
          notChanged: async () => {
            const [row] = await t.deps.db.select().from(serviceTokens).where(eq(serviceTokens.id, st.id));
            assert.equal(row?.revokedAt, null, 'the service token is not revoked');
          },
        };
      },
      'narrowing a service token': async () => {
        const exposure = uniq('sc-');
        await putExposure(t, admin.token, exposure);
        const st = await serviceAccess(t, admin.token, [`expose:${exposure}`, `open:${exposure}`]);
        const { lease } = await issueLease(t, st.accessToken, { kind: 'expose', exposure });
        return {
          lease: lease.id,
          change: () => t.call('PATCH', `/v1/service-tokens/${st.id}`, { token: admin.token, body: { scopes: [`open:${exposure}`] } }),
          notChanged: async () => {
            const [row] = await t.deps.db.select().from(serviceTokens).where(eq(serviceTokens.id, st.id));
            assert.deepEqual(row?.scopes, [`expose:${exposure}`, `open:${exposure}`].sort(), 'the scopes are as they were');
          },
        };
      },
      'deleting an exposure': async () => {
        const exposure = uniq('del-');
        await putExposure(t, admin.token, exposure);
        const { lease } = await issueLease(t, admin.token, { kind: 'expose', exposure });
        return {
          lease: lease.id,
          change: () => t.call('DELETE', `/v1/exposures/${exposure}`, { token: admin.token }),
          notChanged: async () => {
            assert.equal((await t.deps.db.select().from(exposures).where(eq(exposures.name, exposure))).length, 1, 'the exposure is there');
          },
        };
      },
      'taking a user off an allow list': async () => {
        const bob = await t.user(uniq('bob'), 'member');
        const exposure = uniq('acl-');
        await putExposure(t, admin.token, exposure, [bob.name]);
        await exposeOn(t, admin.token, node, admin.token, exposure);
        await heartbeat(t, node, [{ name: exposure, port: 22 }]);
        const { lease } = await issueLease(t, bob.token, { kind: 'open', exposure });
        return {
          lease: lease.id,
          change: () => t.call('PUT', `/v1/exposures/${exposure}`, { token: admin.token, body: { allow: [] } }),
          notChanged: async () => {
            const [row] = await t.deps.db.select().from(exposures).where(eq(exposures.name, exposure));
            assert.deepEqual(row?.allow, [bob.name], 'the allow list is as it was');
          },
        };
      },
      'logging out': async () => {
        const u = await t.user(uniq('out'), 'member', PASSWORD);
        const login = await t.call('POST', '/v1/auth/token', { body: { grant_type: 'password', username: u.name, password: PASSWORD } });
        assertOk(login);
        const session = login.body as { access_token: string; refresh_token: string };
        const exposure = uniq('out-');
        await putExposure(t, u.token, exposure);
        const { lease } = await issueLease(t, session.access_token, { kind: 'expose', exposure });
        return {
          lease: lease.id,
          change: () => t.call('POST', '/v1/auth/logout', { token: session.access_token, body: { refresh_token: session.refresh_token } }),
          notChanged: async () => {
            assert.equal((await t.call('GET', '/v1/me', { token: session.access_token })).status, 200, 'the session is live');
          },
        };
      },
    };

    const activeAndNotInFeed = async (id: string) => {
      const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, id));
      assert.equal(row?.revokedAt, null, 'the lease is not revoked');
      assert.equal((await t.deps.db.select().from(revocations).where(eq(revocations.leaseId, id))).length, 0, 'nor in its relay feed');
    };

    before(async () => {
      t = await makeApp();
      admin = await t.user(uniq('admin'), 'admin');
      node = await enrollNode(t, admin.token);
      await heartbeat(t, node);
    });

    for (const [what, setup] of Object.entries(setups)) {
      for (const [where, on] of Object.entries(FAILURES)) {
        it(`${what}: a failure ${where} leaves neither the change nor the revocation`, async () => {
          const c = await setup();
          const res = await failing(t, on, c.change);
          assert.equal(res.status, 500, JSON.stringify(res.body));
          await c.notChanged();
          await activeAndNotInFeed(c.lease);
        });
      }
      it(`${what}: without a failure, the change revokes the lease`, async () => {
        const c = await setup();
        const res = await c.change();
        assert.ok(res.status < 300, `${res.status} ${JSON.stringify(res.body)}`);
        const [row] = await t.deps.db.select().from(leases).where(eq(leases.id, c.lease));
        assert.notEqual(row?.revokedAt, null, 'the lease is revoked');
        assert.equal((await t.deps.db.select().from(revocations).where(eq(revocations.leaseId, c.lease))).length, 1, 'and in its relay feed');
      });
    }
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
