/**
 * What the console's Chromium tests start with: a control plane (test app, embedded database)
 * served on a free loopback port, a browser, and an admin with `password`. Registers the suite's
 * before and after hooks; the fields are set once the before hook has run.
 */
import { serve, type ServerType } from '@hono/node-server';
import { after, before } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { uniq } from '../../control/testing/fixtures.js';
import { createTestApp, type TestApp } from '../../control/testing/test-app.js';
import { launchBrowser } from './browser.js';
import { freePort } from './net.js';

export interface ConsoleStage {
  t: TestApp;
  browser: Browser;
  /** http://127.0.0.1:PORT, also the control plane's issuer. */
  base: string;
  admin: { id: string; name: string };
  /** Signs the admin in on `page` through the sign-in form and waits for the first page after it. */
  signIn(page: Page): Promise<void>;
}

export function consoleStage(password: string): ConsoleStage {
  const stage = {
    async signIn(page: Page) {
      await page.goto(`${stage.base}/console/login`);
      await page.getByLabel('User name').fill(stage.admin.name);
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(/\/console\/exposures/);
    },
  } as ConsoleStage;
  let server: ServerType | undefined;
  before(async () => {
    const port = await freePort();
    stage.base = `http://127.0.0.1:${port}`;
    stage.t = await createTestApp({ settings: { issuer: stage.base } });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: stage.t.app.fetch, hostname: '127.0.0.1', port }, () => resolve(s));
    });
    stage.browser = await launchBrowser();
    stage.admin = await stage.t.user(uniq('admin'), 'admin', password);
  });
  after(async () => {
    await stage.browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await stage.t?.close();
  });
  return stage;
}
