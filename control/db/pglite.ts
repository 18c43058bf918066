import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import type { PGlite, PGliteOptions } from '@electric-sql/pglite';

/**
 * The embedded database's footprint (issue 11: a control plane that fits a 512 MB VPS).
 *
 * Measured with PGlite 0.5 on this repository's 2-core VM:
 * - `shared_buffers` defaults to 128MB and PGlite touches all of it: about 310 MB RSS for an idle
 *   PGlite against about 170 MB with 8MB. The control plane's working set (users, exposures,
 *   leases, audit) is a few MB, and the OS page cache sits below it anyway.
 * - WebAssembly code: see `loadPglite`.
 * - A first start runs initdb in a second WASM instance: about 5 s of CPU and an 800 MB peak,
 *   most of a first start. The cluster initdb makes is the same every time (same WASM, same
 *   locale), so the build makes it once (`buildPgliteTemplate`, from scripts/copy-assets.mjs)
 *   and a first start copies that directory instead: tens of ms of file copies. The template has
 *   the migrations applied too (applying them through PGlite took longer than initdb). Without a
 *   current template (a build that skipped it), PGlite runs initdb and migrations as before.
 */
export const PGLITE_SHARED_BUFFERS = '8MB';

/** Where the build leaves the template cluster, next to the migrations in dist/. */
export const PGLITE_TEMPLATE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'pglite-template');
const STAMP = 'TUNNEL_TEMPLATE_STAMP';

/**
 * What a template must match to be used: the PGlite version (the on-disk format) and every
 * migration file (the template has them applied).
 */
export function templateStamp(migrationsDir: string): string {
  const h = createHash('sha256').update(pgliteVersion());
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else h.update(`\0${path.slice(migrationsDir.length)}\0`).update(readFileSync(path));
    }
  };
  walk(migrationsDir);
  return `pglite ${pgliteVersion()} migrations ${h.digest('hex').slice(0, 32)}`;
}

function pgliteVersion(): string {
  const require = createRequire(import.meta.url);
  // The package's exports hide package.json; its main entry sits in dist/ under the package root.
  const main = require.resolve('@electric-sql/pglite');
  const pkg = join(dirname(main), '..', 'package.json');
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/** PGlite options for the control plane's database (the start parameters above). */
export function pgliteOptions(): PGliteOptions {
  return { startParams: [...defaultStartParams(), '-c', `shared_buffers=${PGLITE_SHARED_BUFFERS}`] };
}

let defaults: string[] | undefined;
function defaultStartParams(): string[] {
  if (!defaults) throw new Error('loadPglite() first');
  return defaults;
}

/**
 * Imports PGlite (lazily: Postgres deployments never load the WASM). First tells V8 to run
 * WebAssembly with its baseline compiler only: tiering Postgres' hot functions up to TurboFan
 * cost about 0.45 s of CPU at every start and 40 MB of RSS for code, and measured no faster per
 * query afterwards (an insert and a select by key: about 0.9 ms of CPU either way). The flag is
 * process-wide; the control plane runs no other WebAssembly on a hot path.
 */
export async function loadPglite(): Promise<typeof PGlite> {
  setFlagsFromString('--liftoff-only');
  const { PGlite: P } = await import('@electric-sql/pglite');
  // PGlite's own defaults (single-user mode, no parallel workers ...); ours are appended.
  defaults = [...((P as unknown as { defaultStartParams?: string[] }).defaultStartParams ?? [])];
  return P;
}

/**
 * Before PGlite opens `dataDir` the first time: fills it from the build's template cluster, so
 * PGlite finds a database and skips initdb. Does nothing when `dataDir` already holds a cluster,
 * is not empty, or there is no template (or one from another PGlite version). The copy goes to
 * a sibling first and is renamed into place, so an interrupted copy never looks like a cluster.
 */
export function seedFromTemplate(dataDir: string, migrationsDir: string, templateDir = PGLITE_TEMPLATE_DIR): boolean {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return false;
  if (!existsSync(join(templateDir, 'PG_VERSION'))) return false;
  if (readStamp(templateDir) !== templateStamp(migrationsDir)) return false;
  if (existsSync(dataDir)) {
    if (readdirSync(dataDir).length > 0) return false;
    rmdirSync(dataDir);
  }
  mkdirSync(dirname(dataDir), { recursive: true, mode: 0o700 });
  const tmp = `${dataDir}.seed-${randomBytes(4).toString('hex')}`;
  try {
    cpSync(templateDir, tmp, { recursive: true, filter: (src) => !src.endsWith(STAMP) });
    chmodSync(tmp, 0o700);
    renameSync(tmp, dataDir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return true;
}

function readStamp(dir: string): string | undefined {
  try {
    return readFileSync(join(dir, STAMP), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Makes the template cluster in `dir`: initdb through PGlite, then `migrate` (the committed
 * migrations; a start then finds them applied). Skips the work when `dir` already holds one with
 * the same stamp.
 */
export async function buildPgliteTemplate(
  migrationsDir: string,
  migrate: (pg: PGlite) => Promise<void>,
  dir = PGLITE_TEMPLATE_DIR,
): Promise<'built' | 'current'> {
  const stamp = templateStamp(migrationsDir);
  if (existsSync(join(dir, 'PG_VERSION')) && readStamp(dir) === stamp) return 'current';
  const tmp = `${dir}.build-${randomBytes(4).toString('hex')}`;
  try {
    mkdirSync(tmp, { recursive: true, mode: 0o700 });
    const P = await loadPglite();
    const pg = await P.create(tmp, pgliteOptions());
    try {
      await migrate(pg);
    } finally {
      await pg.close();
    }
    writeFileSync(join(tmp, STAMP), `${stamp}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return 'built';
}
