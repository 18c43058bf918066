import { sql, type SQL } from 'drizzle-orm';

/**
 * The database's clock `ms` from now, as SQL (`now()`: the start of the statement's transaction),
 * for the dates and cutoffs a replica's own clock must not decide. Every replica writes beside that
 * one clock; a replica's own may be hours off (NTP broken on one machine): a cutoff on it let a
 * replica ahead leave out of a revocation, or prune from the relays' feed, leases still live at
 * the relays (lease-revocation.ts, history-prune.ts, nodes.ts readFeed), prune the rows of live
 * leases, credentials and connections (history-prune.ts, connections.ts), find every console
 * session idle (auth/sessions.ts), or date an audit event in the future (services/audit.ts).
 * Works on PGlite and Postgres alike.
 */
function databaseClock(ms: number): SQL {
  return sql`(now() + ${`${ms} milliseconds`}::interval)`;
}

/** The database's clock `ms` ago (databaseClock). */
export function databaseAgo(ms: number): SQL {
  return databaseClock(-ms);
}

/** The database's clock `ms` ahead (databaseClock). */
export function databaseAhead(ms: number): SQL {
  return databaseClock(ms);
}
