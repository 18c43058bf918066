/**
 * A retired signing key must stay published until everything it signed has expired, for the
 * lease lifetime the operator configured (`--max-lease-ttl`), not only for the default one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { CERT_BACKDATE_SECONDS } from '../../protocol/lease-claims.js';
import { loadControlConfig } from '../config.js';
import { buildDeps } from '../server.js';
import { openDatabase, type OpenedDb } from '../db/client.js';
import { signingKeys } from '../db/schema/index.js';
import { noopLogger } from '../../shared/logger.js';

describe('key lifetime follows the configured maximum lease TTL', () => {
  let opened: OpenedDb;
  before(async () => {
    opened = await openDatabase({ dataDir: 'memory://' });
  });
  after(() => opened.close());

  for (const days of [1, 7, 31]) {
    it(`--max-lease-ttl ${days}d: the old key outlives the longest lease it may have signed`, async () => {
      const cfg = loadControlConfig(['--max-lease-ttl', String(days * 86400)], {
        TUNNEL_MASTER_KEY: randomBytes(32).toString('hex'),
        TUNNEL_DATA_DIR: '/nonexistent',
      });
      const deps = buildDeps(cfg, opened, noopLogger);
      await opened.db.delete(signingKeys);
      await deps.keys.ensure();
      const old = (await deps.keys.signing('sig')).kid;
      await deps.keys.rotate('sig', 0);
      const [row] = await opened.db.select().from(signingKeys).where(eq(signingKeys.kid, old));
      assert.ok(row?.retireAt && row.expireAt);
      const publishedAfterRetiring = (row.expireAt.getTime() - row.retireAt.getTime()) / 1000;
      assert.ok(
        publishedAfterRetiring >= deps.settings.maxLeaseTtl + CERT_BACKDATE_SECONDS,
        `published ${publishedAfterRetiring}s after retiring, leases live up to ${deps.settings.maxLeaseTtl}s`,
      );
    });
  }
});
