import { sql } from 'drizzle-orm';
import type { OpenedDb } from '../db/client.js';
import type { Logger } from '../../shared/logger.js';
import { REVOCATIONS_CHANNEL } from './lease-revocation.js';
import { ListenProbe } from './listen-probe.js';
import { readCredentialNotice } from './nodes.js';
import type { RevocationHub } from './revocation-hub.js';

/** How often a replica asks itself whether its LISTEN hears, and after how long without an answer it counts as deaf. */
export const LISTEN_PROBE_TIMES = { everyMs: 5000, deafAfterMs: 15_000 };

/** The longest a relay poll is held while LISTEN is deaf (ms): the relay reads the database itself that often. */
export const DEAF_HOLD_MS = 2000;

/**
 * Follows other replicas' revocations (Postgres NOTIFY, sent at their commit) on `opened`: wakes
 * this replica's held relay polls (`hub.poke`), ends those of a node that enrolled again
 * elsewhere (`hub.evict`), and makes every held poll read the feed again after LISTEN was
 * re-established (what was sent meanwhile is lost). A probe (listen-probe.ts) finds out when
 * LISTEN hears nothing; until it hears again, polls are held at most DEAF_HOLD_MS. Nothing to do on
 * the embedded database (one process, no other replica).
 */
export async function followRevocations(
  opened: Pick<OpenedDb, 'db' | 'listen'>,
  hub: RevocationHub,
  logger: Logger,
  times: { everyMs: number; deafAfterMs: number } = LISTEN_PROBE_TIMES,
): Promise<{ stop(): void; probe: ListenProbe | undefined }> {
  if (!opened.listen) return { stop: () => {}, probe: undefined };
  const probe = new ListenProbe({
    ...times,
    logger,
    notify: async (payload) => {
      await opened.db.execute(sql`select pg_notify(${REVOCATIONS_CHANNEL}, ${payload})`);
    },
    onChange: (hearing) => {
      hub.holdCapMs = hearing ? Infinity : DEAF_HOLD_MS;
      // Polls held now were promised a wake-up that cannot come: they read the feed again at once.
      if (!hearing) hub.poke('all');
    },
  });
  let listened = false;
  await opened.listen(
    REVOCATIONS_CHANNEL,
    (payload) => {
      if (probe.heard(payload)) return;
      const replaced = readCredentialNotice(payload); // a node enrolled again, or was removed, on another replica
      if (replaced) hub.evict(replaced.nodeId, replaced.hash);
      else hub.poke(payload === '*' ? 'all' : payload.split(','));
    },
    () => {
      if (listened) hub.poke('all');
      listened = true;
    },
  );
  probe.start();
  return { stop: () => probe.stop(), probe };
}
