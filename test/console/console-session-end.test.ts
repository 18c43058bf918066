/**
 * A console page that refreshes itself (connections) in a real Chromium, when its session ends
 * elsewhere: the refresh must not put the sign-in page inside the old page (which still says who
 * was signed in), but leave it for the sign-in page.
 */
import assert from 'node:assert/strict';
import { serve, type ServerType } from '@hono/node-server';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { createTestApp, type TestApp } from '../../control/testing/test-app.js';
import { uniq } from '../../control/testing/fixtures.js';
import { launchBrowser } from '../harness/browser.js';
import { freePort } from '../harness/net.js';

const PASSWORD = 'a long enough password';

describe('console: a self-refreshing page after its session ends (Chromium)', () => {
  let t: TestApp;
  let server: ServerType;
  let browser: Browser;
  let base: string;
  let admin: { id: string; name: string };

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await createTestApp({ settings: { issuer: base } });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: t.app.fetch, hostname: '127.0.0.1', port }, () => resolve(s));
    });
    browser = await launchBrowser();
    admin = await t.user(uniq('admin'), 'admin', PASSWORD);
  });
  after(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await t?.close();
  });

  it('goes to the sign-in page when signed out in another tab, instead of showing it inside the old page', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${base}/console/login`);
    await page.getByLabel('User name').fill(admin.name);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/console\/exposures/);
    await page.goto(`${base}/console/connections`);
    assert.equal(await page.locator('#live-tables').count(), 1);

    const other = await ctx.newPage();
    await other.goto(`${base}/console/exposures`);
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
});
