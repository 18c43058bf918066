/**
 * A console page that refreshes itself (connections) in a real Chromium, when its session ends
 * elsewhere: the refresh must not put the sign-in page inside the old page (which still says who
 * was signed in), but leave it for the sign-in page.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { consoleStage } from '../harness/console-stage.js';

const PASSWORD = 'a long enough password';

describe('console: a self-refreshing page after its session ends (Chromium)', () => {
  const stage = consoleStage(PASSWORD);


  it('goes to the sign-in page when signed out in another tab, instead of showing it inside the old page', async () => {
    const ctx = await stage.browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${stage.base}/console/login`);
    await page.getByLabel('User name').fill(stage.admin.name);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/console\/exposures/);
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
});
