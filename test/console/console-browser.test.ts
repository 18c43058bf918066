/**
 * The web console in a real Chromium against the real control-plane and relay binaries, with
 * the real CLI as X and Y: sign in, X's exposure online, revoke Y's lease, edit an allow list,
 * a service token that logs X in, what members may not do, CSRF, sign out; axe-core on every
 * page; screenshots at desktop and phone width; every page and form without JavaScript.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { cliFixture, ADMIN, type CliUser } from '../harness/stack.js';
import { roundTrip, waitForLine } from '../harness/streams.js';
import { axeViolations, launchBrowser, screenshots } from '../harness/browser.js';
import { formatPublicKeyLine, rawPublicKey } from '../../protocol/ssh-key.js';

const PAGES = ['exposures', 'connections', 'nodes', 'egress', 'tokens', 'users', 'audit'] as const;
const shotsDir = mkdtempSync(join(tmpdir(), 'tunnel-console-screenshots-'));

describe('web console in a real browser', () => {
  const f = cliFixture();
  let browser: Browser;
  let base: string;

  before(async () => {
    browser = await launchBrowser();
    base = f.stack.control.url;
  });
  after(async () => {
    await browser?.close();
    console.log(`console screenshots: ${shotsDir}`);
  });

  async function signIn(user: { name: string; password: string }, opts: { javaScriptEnabled?: boolean } = {}): Promise<{ ctx: BrowserContext; page: Page }> {
    const ctx = await browser.newContext({ javaScriptEnabled: opts.javaScriptEnabled ?? true });
    const page = await ctx.newPage();
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${base}/console/`);
    assert.match(page.url(), /\/console\/login/);
    await page.getByLabel('User name').fill(user.name);
    await page.getByLabel('Password').fill(user.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/console\/exposures/);
    return { ctx, page };
  }

  /** Reloads `path` until `check` passes (the page shows server state; it changes when the relay reports). */
  async function reloadUntil(page: Page, path: string, check: () => Promise<boolean>, what: string): Promise<void> {
    const end = Date.now() + 20_000;
    for (;;) {
      await page.goto(`${base}${path}`);
      if (await check()) return;
      if (Date.now() > end) throw new Error(`${what}: not seen on ${path} within 20 s`);
      await page.waitForTimeout(250);
    }
  }

  it('signs in, shows X online, lets an allow-list edit admit Y, and revokes Y in the page', async () => {
    const { ctx, page } = await signIn(ADMIN);
    const x = f.admin.spawn(['expose', String(f.echo.port), '--name', 'web-x', '--json']);
    await waitForLine(x, /"event":"connected"/);
    const row = page.locator('tr', { has: page.locator('th', { hasText: 'web-x' }) });
    await reloadUntil(page, '/console/exposures', async () => (await row.count()) === 1 && (await row.locator('.pill').innerText()) === 'online', 'web-x online');
    assert.match(await row.innerText(), /relay-1/);

    // bob is not on the allow list: refused.
    const refused = await f.bob.run(['open', 'web-x', '--stdio'], { input: 'x\n' });
    assert.equal(refused.code, 4, refused.stderr);

    // The admin lets bob in on the page; the same open now goes through.
    await row.getByRole('textbox').fill('bob');
    await row.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(/done=allow-saved/);
    assert.match(await page.locator('.notice.ok').innerText(), /Allow list saved/);
    const ok = await f.bob.run(['open', 'web-x', '--stdio'], { input: 'through the console\n' });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'through the console\nbye\n');

    // Y holds a connection; the admin revokes Y's lease on the connections page; Y's tunnel open ends.
    const y = f.bob.spawn(['open', 'web-x', '--listen', '127.0.0.1:0', '--json']);
    const listening = JSON.parse(await waitForLine(y, /"event":"listening"/)) as { address: string };
    const got = await roundTrip(Number(listening.address.split(':').pop()), Buffer.from('ping\n'));
    assert.equal(got.toString(), 'ping\nbye\n');
    // Y shows up as connected now (from the relay's events), and is revoked from that row.
    const connRow = page.locator('table', { has: page.locator('caption', { hasText: 'Connected now' }) }).locator('tbody tr', { hasText: 'web-x' });
    await reloadUntil(page, '/console/connections?user=bob&kind=open', async () => (await connRow.count()) === 1, "bob's connection");
    assert.match(await connRow.innerText(), /bob/);
    const exited = once(y, 'exit');
    await connRow.getByRole('button', { name: /Revoke/ }).click();
    await page.waitForURL(/done=lease-revoked/);
    const [code] = (await exited) as [number | null];
    assert.equal(code, 4, JSON.stringify(y.output()));
    assert.match(y.output().stderr, /revoked/);
    x.kill('SIGTERM');
    await ctx.close();
  });

  it('creates a service token on the page that logs X in and exposes', async () => {
    const { ctx, page } = await signIn(ADMIN);
    await page.goto(`${base}/console/tokens`);
    await page.getByLabel('Name', { exact: true }).fill('hostx-token');
    await page.getByLabel('Scopes').fill('expose:svc-token');
    await page.getByRole('button', { name: 'Create token' }).click();
    const token = await page.locator('#new-token').inputValue();
    assert.match(token, /^tnl_st_/);
    assert.equal(await page.getByRole('button', { name: 'Copy' }).isVisible(), true);
    await ctx.close();

    const x: CliUser = await f.stack.user('hostx');
    const file = join(x.home, 'token');
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    const login = await x.run(['login', '--token-file', file]);
    assert.equal(login.code, 0, login.stderr);
    const expose = x.spawn(['expose', String(f.echo.port), '--name', 'svc-token', '--json']);
    await waitForLine(expose, /"event":"connected"/);
    expose.kill('SIGTERM');
  });

  it('keeps members out of admin pages and admin form posts', async () => {
    const bob = { name: 'bob', password: 'bob-password-123' };
    const { ctx, page } = await signIn(bob);
    const nav = await page.getByRole('navigation', { name: 'Main' }).innerText();
    assert.doesNotMatch(nav, /Users|Audit/);
    for (const path of ['/console/users', '/console/audit']) {
      const res = await page.goto(`${base}${path}`);
      assert.equal(res?.status(), 403, path);
    }
    // Direct form posts with bob's own valid CSRF token are refused by the API's policy.
    await page.goto(`${base}/console/exposures`);
    const csrf = await page.locator('input[name=_csrf]').first().inputValue();
    for (const [path, form] of [
      ['/console/users', { name: 'mallory', role: 'admin', password: 'mallory-password-1' }],
      ['/console/nodes/enroll', { name: 'rogue-relay' }],
      ['/console/nodes/remove?name=relay-1', {}],
      ['/console/egress', { name: 'evil', node: 'relay-1', host: '127.0.0.1', port: '22', allow: 'bob' }],
      ['/console/users/admin/update', { disabled: 'true' }],
    ] as const) {
      const res = await page.request.post(`${base}${path}`, { form: { _csrf: csrf, ...form }, maxRedirects: 0 });
      assert.equal(res.status(), 403, `${path}: ${res.status()}`);
    }
    const users = await f.stack.call('GET', '/v1/users', { token: f.stack.adminToken });
    assert.ok(!(users.body.users as { name: string }[]).some((u) => u.name === 'mallory'));
    const relays = await f.stack.call('GET', '/v1/nodes', { token: f.stack.adminToken });
    assert.ok((relays.body.nodes as { name: string }[]).some((n) => n.name === 'relay-1'), 'relay-1 is still there');
    await ctx.close();
  });

  it('refuses form posts without the CSRF token or from another origin', async () => {
    const { ctx, page } = await signIn(ADMIN);
    const noToken = await page.request.post(`${base}/console/users`, { form: { name: 'csrf-victim', role: 'admin' }, maxRedirects: 0 });
    assert.equal(noToken.status(), 403);
    await page.goto(`${base}/console/users`);
    const csrf = await page.locator('input[name=_csrf]').first().inputValue();
    const foreign = await page.request.post(`${base}/console/users`, {
      form: { _csrf: csrf, name: 'csrf-victim', role: 'admin' },
      headers: { origin: 'https://evil.example' },
      maxRedirects: 0,
    });
    assert.equal(foreign.status(), 403);
    const users = await f.stack.call('GET', '/v1/users', { token: f.stack.adminToken });
    assert.ok(!(users.body.users as { name: string }[]).some((u) => u.name === 'csrf-victim'));
    await ctx.close();
  });

  it('ends the session at sign-out (the old cookies no longer work)', async () => {
    const { ctx, page } = await signIn(ADMIN);
    const cookies = await ctx.cookies();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/console\/login\?done=signed-out/);
    await page.goto(`${base}/console/exposures`);
    assert.match(page.url(), /\/console\/login/);
    // Replaying the cookies from before sign-out does not bring the session back.
    const replay = await browser.newContext();
    await replay.addCookies(cookies);
    const p2 = await replay.newPage();
    await p2.goto(`${base}/console/exposures`);
    assert.match(p2.url(), /\/console\/login/);
    await replay.close();
    await ctx.close();
  });

  it('every page has no serious or critical axe-core violations, with screenshots at desktop and phone width', async () => {
    const { ctx, page } = await signIn(ADMIN);
    const found: string[] = [];
    for (const name of PAGES) {
      await page.goto(`${base}/console/${name}`);
      assert.equal(await page.locator('h1').count(), 1);
      for (const v of await axeViolations(page)) found.push(`${name}: ${v.id} (${v.impact}) ${v.help} at ${JSON.stringify(v.nodes.map((n) => n.target))}`);
      await screenshots(page, shotsDir, name);
    }
    await ctx.close();
    const anon = await browser.newPage();
    await anon.goto(`${base}/console/login`);
    for (const v of await axeViolations(anon)) found.push(`login: ${v.id} (${v.impact}) ${v.help}`);
    await screenshots(anon, shotsDir, 'login');
    await anon.close();
    assert.deepEqual(found, []);
  });

  it('works with JavaScript disabled: every page reads and the forms post', async () => {
    const { ctx, page } = await signIn(ADMIN, { javaScriptEnabled: false });
    for (const name of PAGES) {
      const res = await page.goto(`${base}/console/${name}`);
      assert.equal(res?.status(), 200, name);
    }
    // A form without JavaScript: create an egress target, then delete it (no confirm dialog without JS).
    await page.goto(`${base}/console/egress`);
    await page.getByLabel('Name', { exact: true }).fill('nojs-target');
    await page.getByLabel('Relay', { exact: true }).fill('relay-1');
    await page.getByLabel(/^Host/).fill('127.0.0.1');
    await page.getByLabel('Port').fill('9');
    await page.getByRole('button', { name: 'Save target' }).click();
    await page.waitForURL(/done=target-saved/);
    const row = page.locator('tr', { has: page.locator('th', { hasText: 'nojs-target' }) });
    await row.getByRole('button', { name: /Delete/ }).click();
    await page.waitForURL(/done=target-deleted/);
    assert.equal(await row.count(), 0);
    // Users: create one, promote, disable, enable, each a plain form post.
    await page.goto(`${base}/console/users`);
    await page.getByLabel('Name', { exact: true }).fill('dave');
    await page.getByLabel(/^Password/).fill('dave-password-123');
    await page.getByRole('button', { name: 'Create user' }).click();
    await page.waitForURL(/done=user-created/);
    const dave = page.locator('tr', { has: page.locator('th', { hasText: 'dave' }) });
    await dave.getByRole('button', { name: 'Make admin dave' }).click();
    await page.waitForURL(/done=user-updated/);
    assert.match(await dave.innerText(), /admin/);
    await dave.getByRole('button', { name: 'Disable dave' }).click();
    await page.waitForURL(/done=user-updated/);
    assert.match(await dave.innerText(), /disabled/);
    await dave.getByRole('button', { name: 'Enable dave' }).click();
    await page.waitForURL(/done=user-updated/);
    assert.match(await dave.innerText(), /enabled/);
    // The allow list of an exposure, an enrollment token for a relay.
    await f.stack.call('PUT', '/v1/exposures/nojs-x', { token: f.stack.adminToken, body: { allow: [] } });
    await page.goto(`${base}/console/exposures`);
    const web = page.locator('tr', { has: page.locator('th', { hasText: 'nojs-x' }) });
    await web.getByRole('textbox').fill('bob, dave');
    await web.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(/done=allow-saved/);
    assert.equal(await web.getByRole('textbox').inputValue(), 'bob, dave');
    await page.goto(`${base}/console/nodes`);
    await page.getByLabel('Relay name').fill('relay-nojs');
    await page.getByRole('button', { name: 'Create enrollment token' }).click();
    const enrollToken = await page.locator('#enroll-token').inputValue();
    assert.match(enrollToken, /^tnl_enr_/);
    // That relay enrolled (its record; no process), then removed on the page.
    const hostKey = formatPublicKeyLine(rawPublicKey(generateKeyPairSync('ed25519').publicKey));
    const enrolled = await f.stack.call('POST', '/v1/nodes/enroll', { body: { token: enrollToken, host_key: hostKey, address: '127.0.0.1:1' } });
    assert.equal(enrolled.status, 201, JSON.stringify(enrolled.body));
    await page.goto(`${base}/console/nodes`);
    await page.getByRole('button', { name: 'Remove relay-nojs' }).click();
    await page.waitForURL(/done=relay-removed/);
    assert.equal(await page.locator('th', { hasText: 'relay-nojs' }).count(), 0);
    // And a service token shown once without the copy script.
    await page.goto(`${base}/console/tokens`);
    await page.getByLabel('Name', { exact: true }).fill('nojs-token');
    await page.getByLabel('Scopes').fill('open:web-x');
    await page.getByRole('button', { name: 'Create token' }).click();
    assert.match(await page.locator('#new-token').inputValue(), /^tnl_st_/);
    await page.goto(`${base}/console/tokens`);
    await page.locator('tr', { hasText: 'nojs-token' }).getByRole('button', { name: /Revoke/ }).click();
    await page.waitForURL(/done=token-revoked/);
    assert.match(await page.locator('tr', { hasText: 'nojs-token' }).innerText(), /revoked/);
    // And signing out.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/console\/login\?done=signed-out/);
    await ctx.close();
  });
});
