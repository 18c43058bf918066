import { createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync } from 'node:crypto';
import { publicKeyObject, rawPublicKey } from '../../protocol/ssh-key.js';
import { and, eq, isNull, lt, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { signingKeys } from '../db/schema/index.js';
import type { Clock } from '../../shared/clock.js';
import type { Ids } from '../lib/ids.js';
import type { KeyStore, KeyUse, PublishedKey, SigningKey } from './key-store.js';
import { DEFAULT_KEY_POLICY, type KeyPolicy } from './key-policy.js';
import { open, seal } from './sealed-box.js';

type Row = typeof signingKeys.$inferSelect;
const USES: KeyUse[] = ['sig', 'ssh-ca'];
const KEY_LOCK_ID = 0x6b657973;
/** Rows are re-read at most this often; correctness never depends on the cache (rotation has lead time). */
const CACHE_MS = 5_000;

export class DbKeyStore implements KeyStore {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #ids: Ids;
  readonly #masterKey: Buffer;
  readonly #policy: KeyPolicy;
  #rows: { at: number; rows: Row[] } | undefined;
  readonly #private = new Map<string, SigningKey>();
  /** Public keys by kid: a kid names one immutable key, so its KeyObject is built once. */
  readonly #public = new Map<string, PublishedKey>();
  readonly #derived = new Map<string, Buffer>();

  constructor(deps: { db: Db; clock: Clock; ids: Ids; masterKey: Buffer; policy?: KeyPolicy }) {
    this.#db = deps.db;
    this.#clock = deps.clock;
    this.#ids = deps.ids;
    this.#masterKey = deps.masterKey;
    this.#policy = deps.policy ?? DEFAULT_KEY_POLICY;
  }

  async ensure(): Promise<void> {
    const now = this.#clock.now();
    await this.#db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${KEY_LOCK_ID})`);
      const rows = await tx.select().from(signingKeys);
      for (const use of USES) {
        const active = pickActive(rows, use, now);
        if (!active) {
          await tx.insert(signingKeys).values(this.#newKey(use, now, now));
          continue;
        }
        const due = active.activateAt.getTime() + this.#policy.rotateAfter * 1000 <= now.getTime();
        const hasSuccessor = rows.some((r) => r.use === use && r.activateAt > active.activateAt);
        if (due && !hasSuccessor) await this.#schedule(tx, active, now, this.#policy.publishLead);
      }
      await tx
        .delete(signingKeys)
        .where(lt(signingKeys.expireAt, new Date(now.getTime() - 86400_000)));
    });
    this.#rows = undefined;
  }

  async rotate(use: KeyUse, leadSeconds = this.#policy.publishLead): Promise<string> {
    const now = this.#clock.now();
    const kid = await this.#db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${KEY_LOCK_ID})`);
      const rows = await tx.select().from(signingKeys);
      const active = pickActive(rows, use, now);
      if (!active) {
        const row = this.#newKey(use, now, now);
        await tx.insert(signingKeys).values(row);
        return row.kid;
      }
      // Retire any not-yet-active successor so the newest key is the one that takes over.
      return this.#schedule(tx, active, now, leadSeconds);
    });
    this.#rows = undefined;
    return kid;
  }

  derivedSecret(purpose: string): Buffer {
    let secret = this.#derived.get(purpose);
    if (!secret) {
      secret = Buffer.from(hkdfSync('sha256', this.#masterKey, Buffer.alloc(0), `tunnel derived secret: ${purpose}`, 32));
      this.#derived.set(purpose, secret);
    }
    return secret;
  }

  async signing(use: KeyUse): Promise<SigningKey> {
    let active = pickActive(await this.#load(), use, this.#clock.now());
    if (!active) {
      await this.ensure();
      active = pickActive(await this.#load(), use, this.#clock.now());
      if (!active) throw new Error(`no active ${use} key after ensure()`);
    }
    let key = this.#private.get(active.kid);
    if (!key) {
      const der = open(this.#masterKey, active.privateKeySealed, active.kid);
      const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      key = { kid: active.kid, privateKey, publicKey: createPublicKey(privateKey) };
      this.#private.set(active.kid, key);
    }
    return key;
  }

  async published(): Promise<PublishedKey[]> {
    const now = this.#clock.now();
    return (await this.#load())
      .filter((r) => r.expireAt === null || r.expireAt > now)
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
      .map((r) => {
        let key = this.#public.get(r.kid);
        if (!key) {
          const raw = Buffer.from(r.publicKey, 'base64url');
          key = { kid: r.kid, use: r.use, raw, publicKey: publicKeyObject(raw) };
          this.#public.set(r.kid, key);
        }
        return key;
      });
  }

  async #load(): Promise<Row[]> {
    const nowMs = Date.now();
    if (this.#rows && nowMs - this.#rows.at < CACHE_MS) return this.#rows.rows;
    const rows = await this.#db.select().from(signingKeys);
    this.#rows = { at: nowMs, rows };
    for (const kid of this.#public.keys()) if (!rows.some((r) => r.kid === kid)) this.#public.delete(kid);
    return rows;
  }

  async #schedule(tx: Pick<Db, 'insert' | 'update'>, active: Row, now: Date, leadSeconds: number): Promise<string> {
    const activateAt = new Date(now.getTime() + leadSeconds * 1000);
    const row = this.#newKey(active.use, now, activateAt);
    await tx
      .update(signingKeys)
      .set({ retireAt: activateAt, expireAt: new Date(activateAt.getTime() + this.#policy.maxSignedLifetime * 1000) })
      .where(and(eq(signingKeys.use, active.use), isNull(signingKeys.retireAt)));
    await tx.insert(signingKeys).values(row);
    return row.kid;
  }

  #newKey(use: KeyUse, now: Date, activateAt: Date): Row {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const kid = this.#ids.id(use === 'sig' ? 'sig' : 'ca');
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    return {
      kid,
      use,
      publicKey: rawPublicKey(publicKey).toString('base64url'),
      privateKeySealed: seal(this.#masterKey, der, kid),
      createdAt: now,
      activateAt,
      retireAt: null,
      expireAt: null,
    };
  }
}

/** The key that signs now: activated, not retired, newest first. */
function pickActive(rows: Row[], use: KeyUse, now: Date): Row | undefined {
  return rows
    .filter((r) => r.use === use && r.activateAt <= now && (r.retireAt === null || r.retireAt > now))
    .sort((a, b) => b.activateAt.getTime() - a.activateAt.getTime())[0];
}
