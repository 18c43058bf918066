/**
 * The longest allow list the API takes (ALLOW_LIST_MAX names of USER_NAME_MAX characters) is
 * saved from the console's allow form whole: the form's fields were cut at 8192 characters and its
 * body refused past 32 KiB, where that list, as the page writes it, is over 16 000 characters in
 * the list and as many in the hidden `was`. A field longer than that is a page saying so, not cut.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ALLOW_LIST_MAX, USER_NAME_MAX } from '../../protocol/api-types.js';
import { createTestApp, type TestApp } from '../testing/test-app.js';
import { putExposure, uniq } from '../testing/fixtures.js';
import { assertOk } from '../testing/problem.js';
import { consoleRequest, formFields, type Jar } from '../testing/console-cookies.js';

const BASE = 'http://console.test';
const PASSWORD = 'a long enough password';

describe('console: an allow list as long as the API takes', () => {
  let t: TestApp;
  /** ALLOW_LIST_MAX users, each name USER_NAME_MAX characters long, sorted (as the API lists them). */
  let names: string[];
  before(async () => {
    t = await createTestApp({ settings: { issuer: BASE } });
    names = [];
    for (let i = 0; i < ALLOW_LIST_MAX; i++) names.push((await t.user(`${uniq('full')}-`.padEnd(USER_NAME_MAX, 'x'), 'member')).name);
    names.sort();
  });
  after(async () => {
    await t?.close();
  });

  const send = async (jar: Jar, path: string, form?: Record<string, string>) => (await consoleRequest(t, BASE, jar, path, form)).res;

  /** The owner's signed-in browser. */
  async function signIn(owner: string): Promise<Jar> {
    const jar: Jar = new Map();
    await send(jar, '/console/login');
    const signedIn = await send(jar, '/console/login', { _csrf: jar.get('tunnel_csrf')!, username: owner, password: PASSWORD, next: '/console/exposures' });
    assert.equal(signedIn.status, 303);
    return jar;
  }

  const allowOf = async (exposure: string, token: string) => {
    const res = await t.call('GET', `/v1/exposures/${exposure}`, { token });
    assertOk(res);
    return res.body.allow as string[];
  };

  it('is saved from the form and read back whole, and a page showing it saves an edit of it', async () => {
    const owner = await t.user(uniq('own'), 'member', PASSWORD);
    const exposure = uniq('web-');
    await putExposure(t, owner.token, exposure, names.slice(0, -1));
    const jar = await signIn(owner.name);
    const action = `/console/exposures/${exposure}/allow`;

    // The owner adds the last name: the list is full.
    const fields = formFields(await (await send(jar, '/console/exposures')).text(), action);
    assert.equal(fields.allow, names.slice(0, -1).join(', '));
    const saved = await send(jar, action, { ...fields, allow: `${fields.allow}, ${names.at(-1)!}` });
    assert.equal(saved.status, 303, await saved.text());
    assert.deepEqual(await allowOf(exposure, owner.token), names);

    // The page shows it whole, in the list and in `was`; saved from there, the edit is made.
    const full = formFields(await (await send(jar, '/console/exposures')).text(), action);
    assert.equal(full.allow, names.join(', '));
    assert.equal(full.was, names.join(','));
    const edited = await send(jar, action, { ...full, allow: names.slice(1).join(', ') });
    assert.equal(edited.status, 303, await edited.text());
    assert.deepEqual(await allowOf(exposure, owner.token), names.slice(1));
  });

  it('a field longer than the longest allow list is a page saying so; nothing is saved or cut', async () => {
    const owner = await t.user(uniq('own'), 'member', PASSWORD);
    const exposure = uniq('web-');
    await putExposure(t, owner.token, exposure, names.slice(1));
    const jar = await signIn(owner.name);
    const action = `/console/exposures/${exposure}/allow`;
    const fields = formFields(await (await send(jar, '/console/exposures')).text(), action);

    // Every name and then one more: past the longest list, whatever the names.
    const refused = await send(jar, action, { ...fields, allow: `${names.join(', ')}, ${owner.name}` });
    assert.equal(refused.status, 413);
    assert.match(refused.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await refused.text(), /A field of this form is longer than \d+ characters.*Nothing was saved/s);
    assert.deepEqual(await allowOf(exposure, owner.token), names.slice(1));
  });
});
