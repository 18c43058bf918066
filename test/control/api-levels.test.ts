/**
 * Relays and CLIs state their release and API level on every request (protocol/api-level.ts); the
 * control plane refuses a level it does not serve with 400 API_LEVEL_UNSUPPORTED before reading
 * the request, and serves a peer that states none (a relay or CLI from before the header). The
 * relay's version shows in `tunnel nodes`. Over real HTTP, on PGlite and on a real Postgres.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { usePglite, usePostgres, type MakeApp } from '../../control/testing/databases.js';
import { enrollNode, uniq, type TestNode } from '../../control/testing/fixtures.js';
import { assertOk, assertProblem } from '../../control/testing/problem.js';
import { serveTestApp, type ServedApp } from '../../control/testing/serve.js';
import type { TestApp } from '../../control/testing/test-app.js';
import { API_LEVEL, API_LEVEL_MIN, TUNNEL_VERSION } from '../../protocol/api-level.js';
import { ControlError, createControlClient } from '../../node/control-client.js';
import { run } from '../../cli/run.js';
import { writeCredentials } from '../../cli/settings.js';
import { testContext } from '../../cli/testing/test-context.js';

const HEARTBEAT = { version: 'old', native_crypto: true, egress_driver: 'iptables' as const, connections: 0, exposures: [] };

function dbSuite(name: string, makeApp: MakeApp) {
  describe(`API levels of relays and CLIs (${name})`, { skip: makeApp.unavailable }, () => {
    let t: TestApp;
    let s: ServedApp;
    let admin: { id: string; name: string; token: string };
    let node: TestNode;
    before(async () => {
      t = await makeApp();
      s = await serveTestApp(t);
      admin = await t.user(uniq('admin'), 'admin');
      node = await enrollNode(t, admin.token);
    });
    after(() => s?.close());

    const relayClient = (apiLevel?: number, version?: string) =>
      createControlClient({
        baseUrl: s.url,
        nodeToken: () => node.token,
        timeoutMs: 10_000,
        ...(apiLevel !== undefined ? { apiLevel } : {}),
        ...(version !== undefined ? { version } : {}),
      });

    it('a relay stating a level the control plane does not serve is refused with API_LEVEL_UNSUPPORTED, naming the levels served', async () => {
      for (const level of [API_LEVEL + 1, API_LEVEL_MIN - 1]) {
        const client = relayClient(level);
        try {
          const err = await client.heartbeat({ ...HEARTBEAT, version: TUNNEL_VERSION }).then(
            () => assert.fail(`level ${level} was served`),
            (e: unknown) => e,
          );
          assert.ok(err instanceof ControlError, String(err));
          assert.equal(err.opts.status, 400);
          assert.equal(err.opts.problemCode, 'API_LEVEL_UNSUPPORTED');
          assert.ok(err.message.includes(`API levels ${API_LEVEL_MIN} to ${API_LEVEL}`), err.message);
        } finally {
          await client.close();
        }
      }
    });

    it('the level is checked before the body: a newer relay with a field this control plane does not know gets the level, not UNKNOWN_FIELD', async () => {
      const headers = { 'tunnel-api': String(API_LEVEL + 1), 'user-agent': 'tunnel-node/9.0.0' };
      const r = await s.call('POST', '/v1/nodes/self/heartbeat', { token: node.token, headers, body: { ...HEARTBEAT, new_field: 1 } });
      assertProblem(r, 400, 'API_LEVEL_UNSUPPORTED');
      assert.match(r.body.detail, /^tunnel-node\/9\.0\.0 states API level \d+; .*upgrade the control plane first$/);
      // Enrollment too (no credential yet), and a header that is not a number.
      const enroll = { token: 'tnl_enr_x', host_key: 'k', address: 'a:1' };
      assertProblem(await s.call('POST', '/v1/nodes/enroll', { headers, body: enroll }), 400, 'API_LEVEL_UNSUPPORTED');
      assertProblem(await s.call('GET', '/v1/nodes', { token: admin.token, headers: { 'tunnel-api': 'two' } }), 400, 'API_LEVEL_UNSUPPORTED');
    });

    it('checks the API only: console pages, the device page, /docs and /healthz serve whatever level a request states', async () => {
      // Browsers and health checks state none; a level only matters to the API. Checked on every
      // path, a control plane whose oldest level served rose above 1 would refuse the console.
      const headers = { 'tunnel-api': String(API_LEVEL + 1) };
      for (const path of ['/console/login', '/device', '/docs', '/healthz', '/openapi.json']) {
        const r = await s.call('GET', path, { headers });
        assert.notEqual(r.body?.code, 'API_LEVEL_UNSUPPORTED', path);
        assert.ok(r.status < 400, `${path}: ${r.status}`);
      }
      assertProblem(await s.call('GET', '/v1/nodes', { token: admin.token, headers }), 400, 'API_LEVEL_UNSUPPORTED');
    });

    it('a relay or CLI that states no level (from before the header) is served', async () => {
      assertOk(await s.call('POST', '/v1/nodes/self/heartbeat', { token: node.token, body: HEARTBEAT }), 200);
      assertOk(await s.call('GET', '/v1/nodes/self/revocations', { token: node.token }), 200);
      assertOk(await s.call('GET', '/v1/nodes', { token: admin.token }), 200);
    });

    it("the relay's version from its heartbeat shows in `tunnel nodes`", async () => {
      const client = relayClient(undefined, '7.7.7-next');
      try {
        await client.heartbeat({ ...HEARTBEAT, version: '7.7.7-next' });
      } finally {
        await client.close();
      }
      const ctx = testContext();
      writeCredentials(ctx, { server: s.url, access_token: admin.token, access_expires_at: Date.now() + 3_600_000 });
      assert.equal(await run(['nodes'], ctx), 0, ctx.err());
      const lines = ctx.out().trim().split('\n');
      const head = lines[0]!.split(/\s{2,}/);
      const row = lines.find((l) => l.startsWith(`${node.name} `))!.split(/\s{2,}/);
      assert.equal(row[head.indexOf('VERSION')], '7.7.7-next', ctx.out());
    });
  });
}

describe('the CLI states what it is', () => {
  it('sends its release and API level with every request', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const srv = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ nodes: [] }));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const ctx = testContext();
      writeCredentials(ctx, { server: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, access_token: 'tok', access_expires_at: Date.now() + 3_600_000 });
      assert.equal(await run(['nodes'], ctx), 0, ctx.err());
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!['tunnel-api'], String(API_LEVEL));
      assert.equal(seen[0]!['user-agent'], `tunnel-cli/${TUNNEL_VERSION}`);
    } finally {
      srv.close();
      srv.closeAllConnections();
    }
  });
});

dbSuite('PGlite', usePglite());
dbSuite('Postgres', usePostgres());
