/**
 * `Authorization: Bearer <token>` as clients send it: the scheme in any case and one or more
 * spaces or tabs before the token (RFC 9110 section 11.1: auth schemes are case-insensitive;
 * RFC 6750: `"Bearer" 1*SP b64token`) is accepted, on an ordinary route and on lease issuance
 * (which reads the header before its caller lookup); any other shape is refused with 401, as before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { usePglite } from '../testing/databases.js';
import { assertOk, assertProblem } from '../testing/problem.js';
import { enrollNode, heartbeat, newClientKey, putExposure, uniq } from '../testing/fixtures.js';

const makeApp = usePglite();

describe('the Authorization header\'s Bearer scheme', { skip: makeApp.unavailable }, () => {
  it('is accepted in any case, after one or more spaces or tabs', async () => {
    const t = await makeApp();
    const u = await t.user(uniq('ann'), 'member');
    for (const header of [`bearer ${u.token}`, `BEARER ${u.token}`, `BeArEr ${u.token}`, `Bearer   ${u.token}`, `bearer\t${u.token}`, `Bearer \t ${u.token}`]) {
      const r = await t.call('GET', '/v1/me', { headers: { authorization: header } });
      assertOk(r);
      assert.equal(r.body.name, u.name, JSON.stringify(header));
    }
  });

  it('is accepted in lower case on lease issuance', async () => {
    const t = await makeApp();
    const admin = await t.user(uniq('admin'), 'admin');
    const owner = await t.user(uniq('own'), 'member');
    const node = await enrollNode(t, admin.token);
    await heartbeat(t, node);
    const exposure = uniq('web-');
    await putExposure(t, owner.token, exposure);
    const body = { kind: 'expose', exposure, public_key: newClientKey().line };
    assertOk(await t.call('POST', '/v1/leases', { headers: { authorization: `bearer  ${owner.token}` }, body }), 201);
  });

  it('refuses every other shape with 401', async () => {
    const t = await makeApp();
    const u = await t.user(uniq('bob'), 'member');
    for (const header of [
      `Bearer${u.token}`,
      'Bearer',
      'Bearer ',
      `Basic ${u.token}`,
      `Bearers ${u.token}`,
      `Token ${u.token}`,
      `Bearer ${u.token} extra`,
      `Bearer ${u.token},`,
      `Bearer\u00a0${u.token}`,
      `xBearer ${u.token}`,
    ]) {
      assertProblem(await t.call('GET', '/v1/me', { headers: { authorization: header } }), 401, 'UNAUTHENTICATED');
    }
  });
});
