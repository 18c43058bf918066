/**
 * `?done=` names one of the console's fixed messages (post-redirect-get). A name off Object's
 * prototype (`constructor`, `__proto__`, `toString`) is no message: it showed an empty notice.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestApp, type TestApp } from '../testing/test-app.js';

const BASE = 'http://console.test';

describe('console: ?done= messages', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp({ settings: { issuer: BASE } });
  });
  after(async () => {
    await t?.close();
  });

  const signIn = async (done: string) => {
    const res = await t.app.fetch(new Request(`${BASE}/console/login?done=${done}`, { headers: { 'sec-fetch-site': 'same-origin' } }));
    assert.equal(res.status, 200);
    return res.text();
  };

  it('shows the fixed message a known name names', async () => {
    assert.match(await signIn('signed-out'), /role="status">You are signed out\.</);
  });

  for (const done of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    it(`shows no notice for ${done}`, async () => {
      assert.doesNotMatch(await signIn(done), /role="status"/);
    });
  }
});
