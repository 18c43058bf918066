import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { test } from 'node:test';
import postgres from 'postgres';
import { postgresUnavailableReason, startPostgres } from './postgres.js';

/** Resolves 'open' if something accepts on 127.0.0.1:port, 'closed' on ECONNREFUSED. */
function probe(port: number): Promise<'open' | 'closed'> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve('open');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve('closed') : reject(err)));
  });
}

test('startPostgres runs a real server and stop() removes it', async (t) => {
  const reason = postgresUnavailableReason();
  if (reason) {
    t.skip(reason);
    return;
  }
  const pg = await startPostgres();
  try {
    assert.match(pg.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/tunnel$/);
    const sql = postgres(pg.url, { max: 1, onnotice: () => undefined });
    try {
      const rows = await sql<{ one: number; db: string }[]>`SELECT 1 AS one, current_database() AS db`;
      assert.deepEqual([...rows], [{ one: 1, db: 'tunnel' }]);
    } finally {
      await sql.end();
    }
  } finally {
    await pg.stop();
  }
  assert.equal(await probe(pg.port), 'closed');
  assert.equal(existsSync(pg.dir), false);
  await pg.stop();
});
