import { test } from 'node:test';
import { createTestApp } from './test-app.js';
test('smoke', async () => {
  for (let i = 0; i < 4; i++) {
    const t0 = Date.now();
    const t = await createTestApp();
    console.log('pglite app', Date.now() - t0);
    await t.close();
  }
});
