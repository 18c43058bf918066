/**
 * A console allow-list form loaded before someone was taken off the list must not put them back.
 * The form sends the whole list (what the page showed, with the user's edit); saved as it was, an
 * owner adding a name on a page open since before an admin removed bob gave bob his grant back,
 * and both were told their change was saved. Now the form says what it showed, and a list that
 * changed since is not saved over: the page answers 409 with the list as it is now.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { putExposure, uniq } from '../testing/fixtures.js';
import { assertOk } from '../testing/problem.js';
import { consoleRequest, formFields, type Jar } from '../testing/console-cookies.js';

const BASE = 'http://console.test';
const PASSWORD = 'a long enough password';

describe('console: an allow-list form loaded before a removal', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp({ settings: { issuer: BASE } });
  });
  after(async () => {
    await t?.close();
  });

  const send = async (jar: Jar, path: string, form?: Record<string, string>) => (await consoleRequest(t, BASE, jar, path, form)).res;

  it('does not put back a user an admin took off the list since the page was loaded', async () => {
    const owner = await t.user(uniq('own'), 'member', PASSWORD);
    const admin = await t.user(uniq('adm'), 'admin');
    const bob = await t.user(uniq('bob'), 'member');
    const carol = await t.user(uniq('car'), 'member');
    const dave = await t.user(uniq('dav'), 'member');
    const exposure = uniq('web-');
    await putExposure(t, owner.token, exposure, [bob.name, carol.name]);

    const jar: Jar = new Map();
    await send(jar, '/console/login');
    const signedIn = await send(jar, '/console/login', { _csrf: jar.get('tunnel_csrf')!, username: owner.name, password: PASSWORD, next: '/console/exposures' });
    assert.equal(signedIn.status, 303);
    const page = await send(jar, '/console/exposures');
    assert.equal(page.status, 200);
    const action = `/console/exposures/${exposure}/allow`;
    const fields = formFields(await page.text(), action);
    assert.equal(fields.allow, `${bob.name}, ${carol.name}`);

    // Meanwhile an admin takes bob off the list (his open leases are revoked).
    const removed = await t.call('PUT', `/v1/exposures/${exposure}`, { token: admin.token, body: { allow: [carol.name] } });
    assertOk(removed);

    // The owner adds dave on the page loaded before.
    const saved = await send(jar, action, { ...fields, allow: `${fields.allow}, ${dave.name}` });
    const now = await t.call('GET', `/v1/exposures/${exposure}`, { token: admin.token });
    assertOk(now);
    assert.ok(!(now.body.allow as string[]).includes(bob.name), `bob is not put back on the list: ${JSON.stringify(now.body.allow)}`);
    assert.equal(saved.status, 409);
    assert.match(await saved.text(), /changed since it was read/);

    // The page shown again has the list as it is now; saved from there, dave is added.
    const again = formFields(await (await send(jar, '/console/exposures')).text(), action);
    assert.equal(again.allow, carol.name);
    assert.equal((await send(jar, action, { ...again, allow: `${again.allow}, ${dave.name}` })).status, 303);
    const after = await t.call('GET', `/v1/exposures/${exposure}`, { token: admin.token });
    assert.deepEqual(after.body.allow, [carol.name, dave.name].sort());
  });
});
