import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createMemoryLogger } from './logger.js';
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

it('without a health source serves /metrics alone: /healthz is 404, HEAD has no body, other methods 405', async () => {
  const server = createHealthServer({ metrics: () => 'up 1\n' }, 'off');
  const { port } = await server.listen('127.0.0.1', 0);
  try {
    const base = `http://127.0.0.1:${port}`;
    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.equal(metrics.headers.get('cache-control'), 'no-store');
    assert.equal(await metrics.text(), 'up 1\n');
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(`${base}/healthz`)).status, 404);
    assert.equal((await fetch(`${base}/healthz?detail=1`)).status, 404);
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  } finally {
    await server.close();
  }
});
