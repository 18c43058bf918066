import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { buildEmbeddedTemplate, MIGRATIONS_DIR, openDatabase } from './client.js';
import { PGLITE_SHARED_BUFFERS, PGLITE_TEMPLATE_DIR, PGLITE_TEMPLATE_PACK, packTemplate, seedFromTemplate } from './pglite.js';

const root = mkdtempSync(join(tmpdir(), 'tunnel-pglite-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('embedded database template (first start without initdb)', () => {
  it('the build made a current template', async () => {
    assert.ok(existsSync(join(PGLITE_TEMPLATE_DIR, 'PG_VERSION')), `no template in ${PGLITE_TEMPLATE_DIR}: npm run build makes it`);
    assert.equal(await buildEmbeddedTemplate(), 'current');
  });

  it('a first start copies it (mode 0700), finds every migration applied and runs with small shared_buffers', async () => {
    const dataDir = join(root, 'first', 'db');
    assert.equal(seedFromTemplate(dataDir, MIGRATIONS_DIR), true);
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(existsSync(join(dataDir, 'TUNNEL_TEMPLATE_STAMP')), false, 'the stamp stays in the template');
    // Big files (the WAL segment) are written without their trailing zeros, then extended: same bytes.
    const wal = join('pg_wal', '000000010000000000000001');
    assert.ok(readFileSync(join(dataDir, wal)).equals(readFileSync(join(PGLITE_TEMPLATE_DIR, wal))), 'the WAL segment reads back identical');
    const opened = await openDatabase({ dataDir });
    try {
      const journal = JSON.parse(readFileSync(join(MIGRATIONS_DIR, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] };
      const applied = (await opened.db.execute(sql`select count(*)::int as n from drizzle.__drizzle_migrations`)) as unknown as { rows: { n: number }[] };
      assert.equal(applied.rows[0]!.n, journal.entries.length);
      await opened.db.execute(sql`insert into settings (key, value) values ('probe', 'ok')`);
      const sb = (await opened.db.execute(sql`select current_setting('shared_buffers') as v`)) as unknown as { rows: { v: string }[] };
      assert.equal(sb.rows[0]!.v, PGLITE_SHARED_BUFFERS);
    } finally {
      await opened.close();
    }
    // The second start finds the cluster and its data; nothing is copied over it.
    assert.equal(seedFromTemplate(dataDir, MIGRATIONS_DIR), false);
    const again = await openDatabase({ dataDir });
    try {
      const row = (await again.db.execute(sql`select value from settings where key = 'probe'`)) as unknown as { rows: { value: string }[] };
      assert.equal(row.rows[0]?.value, 'ok');
    } finally {
      await again.close();
    }
  });

  it('leaves a non-empty directory alone', () => {
    const dataDir = join(root, 'busy');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(join(dataDir, 'something'), 'x');
    assert.equal(seedFromTemplate(dataDir, MIGRATIONS_DIR), false);
    assert.equal(existsSync(join(dataDir, 'PG_VERSION')), false);
  });

  it('does not use a template made from other migrations or another PGlite', () => {
    const template = join(root, 'stale-template');
    cpSync(PGLITE_TEMPLATE_DIR, template, { recursive: true });
    writeFileSync(join(template, 'TUNNEL_TEMPLATE_STAMP'), 'pglite 0.0.1 migrations 00\n');
    const dataDir = join(root, 'stale', 'db');
    assert.equal(seedFromTemplate(dataDir, MIGRATIONS_DIR, template, join(root, 'no.pack')), false);
    assert.equal(existsSync(dataDir), false);
  });

  it('the installed package has only the packed template: a first start unpacks it, byte for byte, and opens it', async () => {
    assert.ok(existsSync(PGLITE_TEMPLATE_PACK), `no ${PGLITE_TEMPLATE_PACK}: npm run build makes it`);
    const dataDir = join(root, 'packed', 'db');
    assert.equal(seedFromTemplate(dataDir, MIGRATIONS_DIR, join(root, 'no-template-dir')), true);
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    const files = (dir: string): string[] =>
      (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(join(dir, f)).isFile() && !f.endsWith('TUNNEL_TEMPLATE_STAMP')).sort();
    const want = files(PGLITE_TEMPLATE_DIR);
    assert.deepEqual(files(dataDir), want);
    for (const f of want) assert.ok(readFileSync(join(dataDir, f)).equals(readFileSync(join(PGLITE_TEMPLATE_DIR, f))), f);
    const opened = await openDatabase({ dataDir });
    try {
      await opened.db.execute(sql`insert into settings (key, value) values ('probe', 'packed')`);
    } finally {
      await opened.close();
    }
  });

  it('does not use a pack made from another template stamp', () => {
    const template = join(root, 'stale-pack-template');
    cpSync(PGLITE_TEMPLATE_DIR, template, { recursive: true });
    writeFileSync(join(template, 'TUNNEL_TEMPLATE_STAMP'), 'pglite 0.0.1 migrations 00\n');
    const pack = join(root, 'stale.pack');
    packTemplate(template, pack);
    const dataDir = join(root, 'stale-pack', 'db');
    assert.equal(seedFromTemplate(dataDir, MIGRATIONS_DIR, join(root, 'no-template-dir'), pack), false);
    assert.equal(existsSync(dataDir), false);
  });
});
