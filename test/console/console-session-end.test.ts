/**
 * A console page that refreshes itself (connections) in a real Chromium, when its session ends
 * elsewhere: the refresh must not put the sign-in page inside the old page (which still says who
 * was signed in), but leave it for the sign-in page. And the session does not end when it should
 * not: a link from another site (sent without the SameSite=Strict cookies) keeps it.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { consoleStage } from '../harness/console-stage.js';

const PASSWORD = 'a long enough password';

describe('console: a self-refreshing page after its session ends (Chromium)', () => {
  const stage = consoleStage(PASSWORD);

  it('goes to the sign-in page when signed out in another tab, instead of showing it inside the old page', async () => {
    const ctx = await stage.browser.newContext();
    const page = await ctx.newPage();
    await stage.signIn(page);
    await page.goto(`${stage.base}/console/connections`);
    assert.equal(await page.locator('#live-tables').count(), 1);

    const other = await ctx.newPage();
    await other.goto(`${stage.base}/console/exposures`);
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.waitForURL(/done=signed-out/);

    // The region's next refresh (every 5 s) finds the session gone.
    const refreshed = page.waitForResponse((r) => r.request().headers()['x-console-fragment'] === 'live-tables');
    await refreshed;
    await page.waitForURL(/\/console\/login\?next=%2Fconsole%2Fconnections/, { timeout: 10_000 });
    assert.equal(await page.locator('header').count(), 1, 'one page, not one inside another');
    assert.equal(await page.locator('header .who').count(), 0, 'no longer shows who was signed in');
    await ctx.close();
  });

  it('a link to the console from another site does not sign the user out', async () => {
    // Another site: a page on "localhost" (not 127.0.0.1, the console's host) linking to the console.
    const target = `${stage.base}/console/connections`;
    const other: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><a id="go" href="${target}">the console</a>`);
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    const otherUrl = `http://localhost:${(other.address() as AddressInfo).port}/`;
    const ctx = await stage.browser.newContext();
    try {
      const page = await ctx.newPage();
      await stage.signIn(page);
      const names = async () => (await ctx.cookies(stage.base)).map((c) => c.name).sort();
      const before = await names();
      assert.deepEqual(before, ['tunnel_at', 'tunnel_csrf', 'tunnel_rt']);

      // The cross-site navigation carries no SameSite=Strict cookie, so that one request is not
      // signed in: its answer must not delete the cookies it was not sent, and the page opens
      // signed in (opened again from the console's own origin, with the cookies).
      await page.goto(otherUrl);
      await page.click('#go');
      await page.waitForSelector('header .who', { timeout: 10_000 });
      assert.equal(new URL(page.url()).pathname, '/console/connections');
      assert.deepEqual(await names(), before, 'the session cookies are kept');
      await page.goto(`${stage.base}/console/exposures`);
      assert.equal(new URL(page.url()).pathname, '/console/exposures', 'still signed in');
      assert.equal(await page.locator('header .who').count(), 1);

      // Signed out, the same link leads to the sign-in page (once, no loop).
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(/done=signed-out/);
      await page.goto(otherUrl);
      await page.click('#go');
      await page.waitForURL(/\/console\/login\?next=%2Fconsole%2Fconnections/, { timeout: 10_000 });
    } finally {
      await ctx.close();
      await new Promise<void>((r) => other.close(() => r()));
    }
  });
});
