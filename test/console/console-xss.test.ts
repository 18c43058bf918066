/**
 * The console and the device page in a real Chromium with HTML and script in every field a
 * stranger, a member or a relay can choose and a page shows: a relay's reported remote address,
 * version and event reasons (connections, relays, audit), a device's client name (the approval
 * page), an egress target's name. Nothing may run (no dialog, no marker set) and no element may
 * come from the data (no <img>, <script>, <svg> or event handler attribute that the page did not
 * have); the text must appear as text.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { enrollNode, heartbeat, tokenFor } from '../../control/testing/fixtures.js';
import { assertOk } from '../../control/testing/problem.js';
import { consoleStage } from '../harness/console-stage.js';

const PASSWORD = 'a long enough password';
// Each closes whatever context it lands in (attribute, text, <code>, JSON) and tries to run.
const PAYLOADS = [
  `"><img src=x onerror="window.__xss=1;alert(1)">`,
  `</code><script>window.__xss=2</script>`,
  `'><svg onload=window.__xss=3>`,
  `</textarea></title><iframe srcdoc="<script>parent.__xss=4</script>">`,
];
const PAGES = ['exposures', 'connections', 'nodes', 'egress', 'tokens', 'users', 'audit'];
const RLO = '\u202e';
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
const BIDI_REMOTE = '10.9.8.7:2222';
const CUT_MARK = 'cut-across:';
const HEBREW = 'שלום';
const ARABIC = 'مرحبا';

/**
 * Whether the first two characters of `text`, where it first occurs in a text node under
 * `selector`, are drawn left to right (as the page's own words must be), or null if not found.
 */
async function drawnLeftToRight(page: Page, selector: string, text: string): Promise<boolean | null> {
  const script = `(() => {
    const [selector, text] = ${JSON.stringify([selector, text])};
    for (const el of document.querySelectorAll(selector)) {
      const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        const i = n.textContent.indexOf(text);
        if (i < 0) continue;
        const left = (k) => { const r = document.createRange(); r.setStart(n, i + k); r.setEnd(n, i + k + 1); return r.getBoundingClientRect().left; };
        return left(0) < left(1);
      }
    }
    return null;
  })()`;
  return (await page.evaluate(script)) as boolean | null;
}

describe('console and device page: hostile text in every field stays text (Chromium)', () => {
  const stage = consoleStage(PASSWORD);

  before(async () => {
    const { t, admin } = stage;
    const token = await tokenFor(t, admin);
    const node = await enrollNode(t, token);
    // A relay's word: its version, remote addresses and reasons (any relay, or a compromised one).
    const hb = await t.call('POST', '/v1/nodes/self/heartbeat', {
      token: node.token,
      body: { version: PAYLOADS[0]!.slice(0, 64), native_crypto: true, egress_driver: 'iptables', connections: 0, exposures: [] },
    });
    assertOk(hb, 200);
    await heartbeat(t, node);
    const at = t.clock.now().toISOString();
    const events = PAYLOADS.flatMap((p, i) => [
      { type: 'conn_open', at, session_id: `s${i}`, remote: p.slice(0, 128), lease_id: p.slice(0, 128) },
      { type: 'auth_fail', at, remote: p.slice(0, 128), reason: p },
      { type: 'conn_close', at, session_id: `s${i}x`, remote: p.slice(0, 128), reason: p },
    ]);
    assertOk(await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events } }), 202);
    // A reason that turns the rest of its line around (U+202E), before a remote address the audit shows after it.
    const turned = [{ type: 'auth_fail', at, remote: BIDI_REMOTE, reason: `bad key ${RLO}x` }];
    assertOk(await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events: turned } }), 202);
    // Reasons whose details reach the audit page's 300-character cut in a run of escapes and
    // entities (`&` then U+202E, shown as \u202e), one character further along each time.
    const across = [0, 1, 2, 3, 4, 5, 6].map((k) => ({ type: 'auth_fail', at, remote: BIDI_REMOTE, reason: `${CUT_MARK}${'x'.repeat(k)}${'&\u202e'.repeat(36)}` }));
    assertOk(await t.call('POST', '/v1/nodes/self/events', { token: node.token, body: { events: across } }), 202);
    // A relay whose words are in ordinary right-to-left letters (no controls), with digits after them.
    const rtl = await enrollNode(t, token);
    const v = await t.call('POST', '/v1/nodes/self/heartbeat', {
      token: rtl.token,
      body: { version: `${HEBREW} 2.0`, native_crypto: true, egress_driver: 'iptables', connections: 0, exposures: [] },
    });
    assertOk(v, 200);
    const rtlEvents = [
      { type: 'conn_open', at, session_id: 'rtl-1', remote: `${ARABIC} 1`, lease_id: `${HEBREW}-7` },
      { type: 'conn_close', at, session_id: 'rtl-1', remote: `${ARABIC} 1`, reason: `${HEBREW} 42`, bytes_in: 1, bytes_out: 2 },
      { type: 'auth_fail', at, remote: `${ARABIC} 3`, reason: `${HEBREW} 5` },
    ];
    assertOk(await t.call('POST', '/v1/nodes/self/events', { token: rtl.token, body: { events: rtlEvents } }), 202);
  });

  async function check(page: Page, where: string): Promise<void> {
    const found = await page.evaluate(() => {
      const g = globalThis as unknown as { __xss?: unknown; document: { querySelectorAll(s: string): { length: number; [i: number]: { attributes: { name: string }[] } } } };
      const all = g.document.querySelectorAll('*');
      let handlers = 0;
      for (let i = 0; i < all.length; i++) for (const a of Array.from(all[i]!.attributes)) if (/^on/i.test(a.name)) handlers++;
      return {
        marker: g.__xss ?? null,
        injected: g.document.querySelectorAll('img[src="x"], svg, iframe, script:not([src])').length,
        handlers,
      };
    });
    assert.deepEqual(found, { marker: null, injected: 0, handlers: 0 }, where);
  }

  it('every console page an admin sees', async () => {
    const ctx = await stage.browser.newContext();
    const page = await ctx.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await stage.signIn(page);
    let shown = '';
    for (const p of PAGES) {
      await page.goto(`${stage.base}/console/${p}?state=all`);
      await check(page, p);
      shown += await page.locator('body').innerText();
    }
    assert.deepEqual(dialogs, []);
    // The hostile text was on the pages, as text (the audit shows the events' data, the relays page the version).
    assert.ok(shown.includes('<img src=x onerror='), 'the payload is shown as text somewhere');
    await ctx.close();
  });

  it('the device approval page, with a client name chosen by whoever started the sign-in', async () => {
    let shown = 0;
    for (const p of PAYLOADS) {
      const name = p.slice(0, 64);
      const d = await stage.t.call('POST', '/v1/auth/device', { body: { client_name: name } });
      if (d.status !== 200) continue; // a name the API refuses never reaches the page
      shown++;
      const ctx = await stage.browser.newContext();
      const page = await ctx.newPage();
      const dialogs: string[] = [];
      page.on('dialog', (x) => {
        dialogs.push(x.message());
        void x.dismiss();
      });
      await page.goto(`${stage.base}/device?user_code=${encodeURIComponent(d.body.user_code)}`);
      await page.getByLabel('User name').fill(stage.admin.name);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForSelector('text=Approve this sign-in?');
      await check(page, `device page, client_name ${JSON.stringify(name)}`);
      assert.ok((await page.locator('body').innerText()).includes(name), 'the name is shown as text');
      assert.deepEqual(dialogs, []);
      await ctx.close();
    }
    assert.equal(shown, PAYLOADS.length, 'every payload is a client name the API takes');
  });
  it('every field in right-to-left letters is isolated (<bdi>) wherever a page shows it', async () => {
    const ctx = await stage.browser.newContext();
    const page = await ctx.newPage();
    await stage.signIn(page);
    const seen: Record<string, number> = {};
    for (const p of PAGES) {
      await page.goto(`${stage.base}/console/${p}`);
      // Each text node with a right-to-left letter: is it inside an isolate (bdi, dir=auto)?
      const found = (await page.evaluate(`(() => {
        const out = [];
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
          if (!/[\u0590-\u08ff]/.test(n.textContent)) continue;
          out.push({ text: n.textContent, isolated: !!n.parentElement.closest('bdi, [dir=auto]') });
        }
        return out;
      })()`)) as { text: string; isolated: boolean }[];
      seen[p] = found.length;
      for (const f of found) assert.ok(f.isolated, `${p}: ${JSON.stringify(f.text)} is not isolated`);
    }
    // The version on the relays page, the remotes on the connections page, the reasons and remotes in the audit.
    assert.ok(seen.nodes! >= 1 && seen.connections! >= 1 && seen.audit! >= 3, JSON.stringify(seen));
    await ctx.close();
  });

  it('the audit page cuts long details between whole escapes and characters, and says it cut', async () => {
    const ctx = await stage.browser.newContext();
    const page = await ctx.newPage();
    await stage.signIn(page);
    await page.goto(`${stage.base}/console/audit?type=relay.auth_fail`);
    const cells = (await page.locator('td code').allInnerTexts()).filter((x) => x.includes(CUT_MARK));
    assert.equal(cells.length, 7);
    for (const shown of cells) {
      assert.ok(shown.length <= 300, `${shown.length}`);
      assert.ok(shown.endsWith('…'), `says it cut: ${shown.slice(-12)}`);
      // Ends with a whole unit: & or a whole \u202e (not \u, \u2, \u20 or \u202).
      assert.match(shown.slice(0, -1), /(?:&|\\u202e)$/, shown.slice(-12));
    }
    await ctx.close();
  });

  it('bidirectional overrides in a client name or a relay\'s text cannot turn the page\'s own words around', async () => {
    const d = await stage.t.call('POST', '/v1/auth/device', { body: { client_name: `Tunnel CLI${RLO}` } });
    assertOk(d, 200);
    const ctx = await stage.browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${stage.base}/device?user_code=${encodeURIComponent(d.body.user_code)}`);
    await page.getByLabel('User name').fill(stage.admin.name);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('text=Approve this sign-in?');
    // The warning after the name reads as written, and the name's hidden character is shown.
    assert.equal(await drawnLeftToRight(page, '.unverified', '(its own claim'), true, 'the "not verified" warning is drawn left to right');
    const body = await page.locator('body').innerText();
    assert.doesNotMatch(body, BIDI);
    assert.ok(body.includes('Tunnel CLI\\u202e'), 'the override is shown as an escape');

    // The audit's details of the relay's event: the remote address after the reason reads as sent.
    await stage.signIn(page);
    await page.goto(`${stage.base}/console/audit`);
    assert.equal(await drawnLeftToRight(page, 'td code', BIDI_REMOTE), true, 'the remote address is drawn left to right');
    for (const p of PAGES) {
      await page.goto(`${stage.base}/console/${p}`);
      assert.doesNotMatch(await page.locator('body').innerText(), BIDI, p);
    }
    await ctx.close();
  });
});
