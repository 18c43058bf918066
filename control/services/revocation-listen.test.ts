/**
 * A replica whose LISTEN hears nothing (its connection lost and not back: here, the database
 * refusing new connections while the replica's pooled one still works) could not be woken by
 * another replica's revocation: the relay polls it held waited out their hold (20 s) before
 * their relays learned of it. Its own probe NOTIFY now finds that out: held polls are woken to
 * read the feed, and held at most 2 s from then on, until LISTEN hears again. Real Postgres.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import postgres from 'postgres';
import { postgresUnavailableReason, startPostgres, type PostgresInstance } from '../../test/harness/postgres.js';
import { eventually } from '../../test/harness/streams.js';
import { openDatabase, type OpenedDb } from '../db/client.js';
import { noopLogger } from '../../shared/logger.js';
import { RevocationHub } from './revocation-hub.js';
import { DEAF_HOLD_MS, followRevocations } from './revocation-listen.js';

const unavailable = postgresUnavailableReason();

describe('a replica whose LISTEN goes deaf', { skip: unavailable, timeout: 120_000 }, () => {
  let pg: PostgresInstance;
  let opened: OpenedDb;
  /** A connection to another database of the cluster, open from the start: it changes `tunnel` while no new connection to that is allowed. */
  let admin: postgres.Sql;
  const hub = new RevocationHub();
  let following: Awaited<ReturnType<typeof followRevocations>> | undefined;

  before(async () => {
    pg = await startPostgres();
    admin = postgres(pg.url.replace(/\/tunnel$/, '/postgres'), { max: 1, onnotice: () => {} });
    await admin`select 1`;
    // One pooled connection (kept open: no idle timeout) beside LISTEN's own.
    opened = await openDatabase({ url: pg.url, poolSize: 1 });
    following = await followRevocations(opened, hub, noopLogger, { everyMs: 100, deafAfterMs: 1000 });
  });
  after(async () => {
    following?.stop();
    hub.close();
    if (admin) {
      await admin`alter database tunnel allow_connections true`.catch(() => {});
      await admin.end({ timeout: 5 });
    }
    await opened?.close();
    await pg?.stop();
  });

  it('hears its own probes while LISTEN works: polls are held as long as asked', async () => {
    const probe = following!.probe!;
    // Twenty probes at 100 ms: twice the deaf time.
    await eventually(async () => assert.ok(probe.heardCount >= 20, `heard ${probe.heardCount}`), 20_000, 50);
    assert.equal(probe.hearing, true);
    assert.equal(hub.holdCapMs, Infinity);
  });

  it('finds LISTEN deaf, wakes the polls it holds and holds new ones at most 2 s; as usual once LISTEN is back', async () => {
    const probe = following!.probe!;
    const waiter = hub.waiter('nod_held')!;
    const woken = waiter.next(60_000);
    // New connections refused (the pooled one stays), then LISTEN's own connection cut: the
    // driver cannot listen again, and nothing more is heard.
    await admin`alter database tunnel allow_connections false`;
    const cut = await admin`select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = 'tunnel' and query ilike 'listen %'`;
    assert.equal(cut[0]?.n, 1);
    assert.deepEqual(await woken, { kind: 'poke' }, 'the held poll is woken to read the feed');
    waiter.close();
    assert.equal(probe.hearing, false);
    assert.equal(hub.holdCapMs, DEAF_HOLD_MS);

    await admin`alter database tunnel allow_connections true`;
    await eventually(async () => assert.equal(probe.hearing, true), 30_000, 50);
    assert.equal(hub.holdCapMs, Infinity);
  });
});
