/**
 * The lease's locked insert (services/lease-insert.ts): a lease is written only while every row
 * its decision read still says what it read. Each change a revocation makes, committed between
 * the decision and the insert, makes the insert write nothing (the route then decides again);
 * the unchanged state writes the lease and its audit row. The race itself, with the insert
 * waiting while a revocation commits, is lease-revocation-race.test (Postgres only); this is the
 * check each revocation relies on, on PGlite and Postgres, including the egress targets, whose
 * read the race test cannot hold.
 */
import assert from 'node:assert/strict';
import { before, beforeEach, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import type { TestApp } from '../testing/test-app.js';
import { usePglite, usePostgres, type MakeApp } from '../testing/databases.js';
import { enrollNode, uniq, type TestNode } from '../testing/fixtures.js';
import { auditEvents, egressTargets, exposures, leases, refreshTokens, serviceTokens, users } from '../db/schema/index.js';
import { insertLeaseIfUnchanged, type CallerAsRead, type DecidedOn } from './lease-insert.js';
import { leaseTimes, type SignedLease } from './leases.js';

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`a lease is written only on the state its decision read (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let node: TestNode;
    let user: { id: string; name: string };
    let owner: { id: string; name: string };
    let exposure: { name: string; ownerId: string; allow: string[] };
    let target: { name: string; nodeId: string; host: string; port: number; allow: string[] };
    let session: string;
    let token: { id: string; scopes: string[] };

    before(async () => {
      t = await makeApp();
      const admin = await t.user(uniq('admin'), 'admin');
      node = await enrollNode(t, admin.token);
    });

    beforeEach(async () => {
      const now = t.clock.now();
      user = await t.user(uniq('yara'), 'member');
      owner = await t.user(uniq('xavier'), 'member');
      exposure = { name: uniq('svc-'), ownerId: owner.id, allow: [user.name] };
      await t.deps.db.insert(exposures).values({ ...exposure, createdAt: now, updatedAt: now });
      target = { name: uniq('db-'), nodeId: node.id, host: '10.0.0.7', port: 5432, allow: [user.name] };
      await t.deps.db.insert(egressTargets).values({ ...target, createdAt: now });
      session = uniq('fam');
      await t.deps.db
        .insert(refreshTokens)
        .values({ id: uniq('rt'), familyId: session, userId: user.id, tokenHash: uniq('h'), createdAt: now, expiresAt: new Date(now.getTime() + 3_600_000) });
      token = { id: uniq('st'), scopes: [`egress:${target.name}`, `open:${exposure.name}`] };
      await t.deps.db.insert(serviceTokens).values({ ...token, name: 'ci', userId: user.id, tokenHash: uniq('h'), createdAt: now });
    });

    const caller = (o: Partial<CallerAsRead> = {}): CallerAsRead => ({
      userId: user.id,
      name: user.name,
      role: 'member',
      sessionId: null,
      serviceTokenId: null,
      scopes: null,
      tokenExpiresAt: null,
      ...o,
    });
    const viaSession = () => caller({ sessionId: session });
    const viaToken = () => caller({ serviceTokenId: token.id, scopes: token.scopes });
    const onExposure = (): DecidedOn => ({ exposure: { ...exposure } });
    const onTarget = (): DecidedOn => ({ targets: [{ ...target }] });

    function signed(c: CallerAsRead, on: DecidedOn): SignedLease {
      const now = t.clock.now();
      const id = uniq('lse_test');
      const egress = 'targets' in on;
      const row: SignedLease['row'] = {
        id,
        kind: egress ? 'egress' : 'open',
        userId: c.userId,
        nodeId: node.id,
        exposure: egress ? null : exposure.name,
        port: egress ? null : 22,
        targets: egress ? [{ host: target.host, port: target.port }] : null,
        sshKey: 'SHA256:test',
        serial: '1',
        serviceTokenId: c.serviceTokenId,
        sessionId: c.sessionId,
        notBefore: now,
        expiresAt: new Date(now.getTime() + 600_000),
        revokedAt: null,
        createdAt: now,
      };
      return {
        row,
        times: leaseTimes(row),
        auditData: { kind: egress ? 'egress' : 'open', node: node.name, exposure: egress ? null : exposure.name, ttl: 600, ssh_key: 'SHA256:test', serial: '1' },
        token: '',
        certificate: Buffer.alloc(0),
      };
    }

    /** Inserts on `c` and `on` as read; answers whether the lease row (and its audit row) was written. */
    async function tryInsert(c: CallerAsRead, on: DecidedOn): Promise<boolean> {
      const s = signed(c, on);
      const wrote = await insertLeaseIfUnchanged(t.deps, c, on, s);
      const rows = await t.deps.db.select().from(leases).where(eq(leases.id, s.row.id));
      const audits = await t.deps.db.select().from(auditEvents).where(eq(auditEvents.subject, s.row.id));
      assert.equal(rows.length, wrote ? 1 : 0, 'lease row as answered');
      assert.equal(audits.length, wrote ? 1 : 0, 'audit row with the lease, or neither');
      if (wrote) assert.equal(audits[0]?.type, 'lease.issued');
      return wrote;
    }

    it('writes the lease on the state as read: a member, a login session, a service token; an exposure, an egress target', async () => {
      for (const c of [caller(), viaSession(), viaToken()]) {
        assert.equal(await tryInsert(c, onExposure()), true);
        assert.equal(await tryInsert(c, onTarget()), true);
      }
    });

    const changes: { what: string; read: () => CallerAsRead; on: () => DecidedOn; change: () => Promise<unknown> }[] = [
      { what: 'the exposure\'s allow list', read: caller, on: onExposure, change: () => t.deps.db.update(exposures).set({ allow: [] }).where(eq(exposures.name, exposure.name)) },
      { what: 'the exposure deleted', read: caller, on: onExposure, change: () => t.deps.db.delete(exposures).where(eq(exposures.name, exposure.name)) },
      { what: 'the user disabled', read: caller, on: onExposure, change: () => t.deps.db.update(users).set({ disabled: true }).where(eq(users.id, user.id)) },
      { what: 'the user\'s role', read: () => caller({ role: 'admin' }), on: onExposure, change: async () => undefined },
      { what: 'the login session ended', read: viaSession, on: onExposure, change: () => t.deps.db.update(refreshTokens).set({ revokedAt: t.clock.now() }).where(eq(refreshTokens.familyId, session)) },
      {
        what: 'the login session\'s end (now before the lease\'s)',
        read: viaSession,
        on: onExposure,
        change: () => t.deps.db.update(refreshTokens).set({ expiresAt: new Date(t.clock.now().getTime() + 60_000) }).where(eq(refreshTokens.familyId, session)),
      },
      { what: 'the service token revoked', read: viaToken, on: onExposure, change: () => t.deps.db.update(serviceTokens).set({ revokedAt: t.clock.now() }).where(eq(serviceTokens.id, token.id)) },
      { what: 'the service token\'s expiry', read: viaToken, on: onExposure, change: () => t.deps.db.update(serviceTokens).set({ expiresAt: new Date(t.clock.now().getTime() + 60_000) }).where(eq(serviceTokens.id, token.id)) },
      { what: 'the service token\'s scopes', read: viaToken, on: onTarget, change: () => t.deps.db.update(serviceTokens).set({ scopes: [`open:${exposure.name}`] }).where(eq(serviceTokens.id, token.id)) },
      { what: 'the egress target\'s allow list', read: caller, on: onTarget, change: () => t.deps.db.update(egressTargets).set({ allow: [] }).where(eq(egressTargets.name, target.name)) },
      { what: 'the egress target moved', read: caller, on: onTarget, change: () => t.deps.db.update(egressTargets).set({ host: '10.0.0.8' }).where(eq(egressTargets.name, target.name)) },
      { what: 'the egress target deleted', read: caller, on: onTarget, change: () => t.deps.db.delete(egressTargets).where(eq(egressTargets.name, target.name)) },
    ];
    for (const c of changes) {
      it(`writes nothing once ${c.what} changed after it was read`, async () => {
        const read = c.read();
        const on = c.on();
        await c.change();
        assert.equal(await tryInsert(read, on), false);
      });
    }
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
