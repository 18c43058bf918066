import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createMemoryLogger } from '../shared/logger.js';
import { createHealthServer } from './health-server.js';

it('answers 500 (and logs why) when health() or metrics() throws, and keeps serving', async () => {
  let fail = true;
  const logger = createMemoryLogger();
  const server = createHealthServer(
    {
      health: () => {
        if (fail) throw Object.assign(new Error('registry gone'), { code: 'E_TEST' });
        return { ok: true };
      },
      metrics: () => {
        throw new Error('render failed');
      },
    },
    'loopback',
    logger,
  );
  const { port } = await server.listen('127.0.0.1', 0);
  try {
    const bad = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(bad.status, 500);
    assert.equal(await bad.text(), 'internal error\n');
    assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 500);
    fail = false;
    const good = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(good.status, 200);
    assert.deepEqual(await good.json(), { ok: true });
    assert.deepEqual(
      logger.lines.map((l) => [l.msg, l.fields.path, (l.fields.err as Error).message]),
      [
        ['health endpoint failed', '/healthz', 'registry gone'],
        ['health endpoint failed', '/metrics', 'render failed'],
      ],
    );
  } finally {
    await server.close();
  }
});
