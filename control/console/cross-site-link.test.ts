/**
 * A link from another site to a console page arrives without the console's cookies
 * (SameSite=Strict): the answer sets and deletes no cookie (which would sign the browser out, or
 * replace its CSRF secret and fail the forms open in its other tabs) and opens the same address
 * again from this origin, which sends them. The sign-in page too.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../testing/test-app.js';

const BASE = 'http://console.test';
const CROSS_SITE = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' };

describe('console: a link from another site', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp({ settings: { issuer: BASE } });
  });
  after(async () => {
    await t?.close();
  });

  for (const path of ['/console/login?next=%2Fconsole%2Fusers', '/console/exposures', "/console/audit?type=a;url=//evil.example/'x"]) {
    it(`${path}: no cookie set or deleted, the same address opened again from this origin`, async () => {
      const res = await t.app.fetch(new Request(`${BASE}${path}`, { headers: CROSS_SITE }));
      assert.equal(res.status, 200);
      // The sign-in page set a new CSRF secret here on the old code.
      assert.deepEqual(res.headers.getSetCookie(), []);
      const html = await res.text();
      const u = new URL(`${BASE}${path}`);
      const here = `${u.pathname}${u.search}`;
      const refresh = /<meta http-equiv="refresh" content="0; url=([^"]*)"/.exec(html);
      assert.ok(refresh, 'a meta refresh');
      const target = refresh[1]!.replaceAll('&#39;', "'").replaceAll('&amp;', '&');
      assert.equal(target, here, 'the same address, as a path of this origin');
      assert.equal(new URL(target, BASE).origin, BASE);
    });
  }

  it('the sign-in page opened from this origin still gets its CSRF secret', async () => {
    const res = await t.app.fetch(new Request(`${BASE}/console/login`, { headers: { ...CROSS_SITE, 'sec-fetch-site': 'same-origin' } }));
    assert.equal(res.status, 200);
    assert.ok(res.headers.getSetCookie().some((l) => l.startsWith('tunnel_csrf=')));
  });
});
