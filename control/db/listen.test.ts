/**
 * LISTEN for other replicas' revocations (control/db/client.ts) on a real Postgres: the listening
 * connection survives its backend being terminated and the server being stopped for a while,
 * and it says each time it listens again: a NOTIFY sent while it was not listening is lost (a
 * revocation committed by another replica then woke none of this replica's held polls; their
 * relays heard of it only when the poll's wait ran out, up to 25 s), so the server makes every
 * held poll read the feed again there (control/server.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { postgresUnavailableReason, startPostgres, type PostgresInstance } from '../../test/harness/postgres.js';
import { eventually } from '../../test/harness/streams.js';
import { openDatabase, type OpenedDb } from './client.js';

const unavailable = postgresUnavailableReason();
const CHANNEL = 'tunnel_listen_test';

describe('LISTEN on Postgres keeps listening', { skip: unavailable }, () => {
  let pg: PostgresInstance;
  let opened: OpenedDb;
  const heard: string[] = [];
  let listening = 0;

  before(async () => {
    pg = await startPostgres();
    opened = await openDatabase({ url: pg.url, poolSize: 2 });
    await opened.listen!(CHANNEL, (p) => heard.push(p), () => listening++);
  });
  after(async () => {
    await opened?.close();
    await pg?.stop();
  });

  /** NOTIFYs `payload` (again and again, from psql) until the listener has heard it. */
  const heardAfterNotify = (payload: string) =>
    eventually(async () => {
      await pg.psql(`select pg_notify('${CHANNEL}', '${payload}')`);
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(heard.includes(payload), `not heard: ${payload}`);
    }, 20_000);

  it('hears a NOTIFY, and said it listens once', async () => {
    await heardAfterNotify('first');
    assert.equal(listening, 1);
  });

  it('its backend terminated: it listens again and says so', async () => {
    const killed = await pg.psql(`select count(pg_terminate_backend(pid)) from pg_stat_activity where query ilike 'listen %'`);
    assert.equal(killed.trim(), '1');
    await heardAfterNotify('after-terminate');
    assert.equal(listening, 2);
  });

  it('the server stopped for a while and started again: it listens again and says so', async () => {
    await pg.pause();
    // Long enough for the first attempts to listen again to fail against the stopped server.
    await new Promise((r) => setTimeout(r, 1500));
    await pg.resume();
    await heardAfterNotify('after-restart');
    assert.equal(listening, 3);
  });
});
