/**
 * `tunnel logout` ends the login session on the control plane, or says it did not. It used to
 * print "Logged out." and delete the credentials whatever the server answered: with an expired
 * access token the logout was refused (401 TOKEN_EXPIRED), so the session and the leases issued
 * through it stayed live while the user was told they were logged out. Now an expired access
 * token is renewed with the refresh token first; a control plane that cannot be reached leaves
 * the credentials in place with a non-zero exit. The CLI's run() against the control plane over
 * real HTTP, on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { usePglite, usePostgres, type MakeApp } from '../../control/testing/databases.js';
import { enrollNode, heartbeat, newClientKey, putExposure, uniq, type TestNode } from '../../control/testing/fixtures.js';
import { assertOk, assertProblem } from '../../control/testing/problem.js';
import { serveTestApp, type ServedApp } from '../../control/testing/serve.js';
import type { TestApp } from '../../control/testing/test-app.js';
import { leases } from '../../control/db/schema/index.js';
import { run } from '../../cli/run.js';
import { EXIT } from '../../cli/errors.js';
import { readCredentials, writeCredentials } from '../../cli/settings.js';
import { testContext, type TestContext } from '../../cli/testing/test-context.js';

const PASSWORD = 'a long enough password';

/** A loopback URL where nothing listens (connection refused). */
async function deadUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`tunnel logout ends the session on the control plane, or says it did not (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let s: ServedApp;
    let node: TestNode;
    before(async () => {
      t = await makeApp();
      s = await serveTestApp(t);
      node = await enrollNode(t, (await t.user(uniq('admin'), 'admin')).token);
    });
    after(() => s?.close());

    /** A member logged in with the CLI (password), holding an expose lease issued through that login. */
    async function loggedIn(): Promise<{ ctx: TestContext; lease: string; accessToken: string }> {
      const u = await t.user(uniq('lo'), 'member', PASSWORD);
      const ctx = testContext({ stdin: `${PASSWORD}\n` });
      assert.equal(await run(['login', '--server', s.url, '--password', '--user', u.name], ctx), 0, ctx.err());
      const accessToken = readCredentials(ctx)!.access_token;
      const exposure = uniq('lo-');
      await putExposure(t, accessToken, exposure);
      await heartbeat(t, node); // online now (an earlier test moved the clock)
      const r = await s.call('POST', '/v1/leases', { token: accessToken, body: { kind: 'expose', exposure, public_key: newClientKey().line } });
      assertOk(r, 201);
      return { ctx, lease: r.body.lease.id as string, accessToken };
    }
    const revokedAt = async (id: string) => (await t.deps.db.select().from(leases).where(eq(leases.id, id)))[0]?.revokedAt ?? null;
    /** Runs `tunnel logout` in `ctx`; returns the exit code and what it printed on stderr. */
    const logout = async (ctx: TestContext) => {
      const before = ctx.err().length;
      const code = await run(['logout'], ctx);
      return { code, stderr: ctx.err().slice(before) };
    };

    it('with an expired access token: renews it, ends the session and its leases, then says "Logged out."', async () => {
      const { ctx, lease, accessToken } = await loggedIn();
      t.clock.advance((t.deps.settings.accessTokenTtl + 1) * 1000);
      assertProblem(await s.call('GET', '/v1/me', { token: accessToken }), 401, 'TOKEN_EXPIRED');
      const refreshToken = readCredentials(ctx)!.refresh_token!;
      const r = await logout(ctx);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, 'Logged out.\n');
      assert.equal(readCredentials(ctx), undefined, 'the credentials are deleted');
      assert.notEqual(await revokedAt(lease), null, "the session's lease is revoked");
      assertProblem(await s.call('POST', '/v1/auth/token', { body: { grant_type: 'refresh_token', refresh_token: refreshToken } }), 400, 'INVALID_GRANT');
    });

    it('an unreachable control plane: exit 5, one line saying the end of the session was not confirmed, the credentials kept', async () => {
      const { ctx, lease } = await loggedIn();
      const creds = readCredentials(ctx)!;
      writeCredentials(ctx, { ...creds, server: await deadUrl() });
      const r = await logout(ctx);
      assert.equal(r.code, EXIT.UNREACHABLE, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^tunnel logout: cannot reach the control plane .*; the control plane did not confirm that the login session ended, so the credentials are kept \(run tunnel logout again/);
      assert.ok(readCredentials(ctx), 'the credentials are kept');
      assert.equal(await revokedAt(lease), null);
      // Once the control plane is reachable again, the same command ends it.
      writeCredentials(ctx, { ...readCredentials(ctx)!, server: s.url });
      const again = await logout(ctx);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stderr, 'Logged out.\n');
      assert.notEqual(await revokedAt(lease), null);
    });

    it('a session that had already ended: says so, not "Logged out.", and deletes the credentials', async () => {
      const { ctx, accessToken } = await loggedIn();
      assert.equal((await s.call('POST', '/v1/auth/logout', { token: accessToken })).status, 204);
      const r = await logout(ctx);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /^The login session had already ended/);
      assert.equal(readCredentials(ctx), undefined);
    });
  });
}

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
