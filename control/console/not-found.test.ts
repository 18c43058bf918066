/**
 * The console's 404 page does not repeat the requested path: escaped, it could not run, but a
 * link to /console/<words> put a stranger's words on this origin's page (phishing).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../testing/test-app.js';

const BASE = 'http://console.test';

describe('console: the 404 page', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp({ settings: { issuer: BASE } });
  });
  after(async () => {
    await t?.close();
  });

  for (const path of [
    '/console/Your-account-is-locked-call-555-0100',
    '/console/%3Cscript%3Ealert(1)%3C%2Fscript%3E',
    '/console/<img src=x onerror=alert(1)>',
    '/console/exposures/x/y/z',
  ]) {
    it(`answers ${path} with a fixed text, nothing of the path`, async () => {
      for (const method of ['GET', 'POST']) {
        const res = await t.app.fetch(new Request(`${BASE}${path}`, { method }));
        assert.equal(res.status, 404);
        assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
        const html = await res.text();
        assert.match(html, /There is no console page at this address\./);
        const pathname = new URL(`${BASE}${path}`).pathname;
        for (const part of [pathname, ...pathname.split('/').filter((s) => s.length > 3 && s !== 'console')]) {
          assert.ok(!html.includes(part), `${method} ${path}: ${part} is not repeated`);
        }
        assert.doesNotMatch(html, /Your-account|555-0100|%3Cscript|onerror|alert\(/);
      }
    });
  }
});
