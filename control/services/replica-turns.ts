import type { Db } from '../db/client.js';

/**
 * A chore one replica does at most once per `everyMs` against a database (pruning what is past
 * its retention): the returned function answers whether `now` is this replica's turn, and if so
 * takes it. A clock that went back counts as a turn. Kept per database object, so tests with an
 * app each keep their own turns.
 */
export function turnsEvery(everyMs: number): (db: Db, now: Date) => boolean {
  const tookAt = new WeakMap<Db, number>();
  return (db, now) => {
    const last = tookAt.get(db);
    const t = now.getTime();
    if (last !== undefined && t >= last && t - last < everyMs) return false;
    tookAt.set(db, t);
    return true;
  };
}
