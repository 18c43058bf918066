import { sql, type SQL } from 'drizzle-orm';

/**
 * The database's clock `ms` ago, as SQL (`now()`: the start of the statement's transaction), for
 * the cutoffs a replica's own clock must not decide. Every replica writes beside that one clock;
 * a replica's own may be hours off (NTP broken on one machine), and a cutoff on it let a replica
 * ahead leave out of a revocation, or prune from the relays' feed, leases still live at the relays
 * (lease-revocation.ts, history-prune.ts, nodes.ts readFeed). Works on PGlite and Postgres alike.
 */
export function databaseAgo(ms: number): SQL {
  return sql`(now() - ${`${ms} milliseconds`}::interval)`;
}
