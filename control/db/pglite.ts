import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, rmdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { brotliCompressSync, brotliDecompressSync, constants as zlib } from 'node:zlib';
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
 * - The installed package (`npm pack`) carries the template as one brotli-compressed file
 *   (`PGLITE_TEMPLATE_PACK`, about 1.6 MB for the 40 MB cluster, most of which is a zero-filled
 *   WAL segment) instead of the directory; PGlite is pinned to one version in package.json so
 *   the installed package finds the same one the pack was made with. Measured from an installed
 *   prefix at a load average of 11 on 2 cores: a first start to "ready" without the pack took
 *   20 s wall, 5.8 s CPU and a 703 MB peak; with it 7 s, 2.0 s CPU and 174 MB. Unpacking costs
 *   about 0.2 s of CPU.
 */
export const PGLITE_SHARED_BUFFERS = '8MB';
/**
 * How much WAL a checkpoint keeps for reuse (Postgres' default is 1GB). PGlite never checkpoints on
 * its own; the control plane does (embedded-maintenance.ts), and pg_wal then stays near this.
 */
export const PGLITE_MAX_WAL = '64MB';

/** Where the build leaves the template cluster, next to the migrations in dist/. */
export const PGLITE_TEMPLATE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'pglite-template');
/** The same template as one file for the package: `PACK_MAGIC`, the stamp line, then brotli data. */
export const PGLITE_TEMPLATE_PACK = join(dirname(fileURLToPath(import.meta.url)), 'pglite-template.pack');
const STAMP = 'TUNNEL_TEMPLATE_STAMP';
const PACK_MAGIC = 'TUNNEL-PGLITE-TEMPLATE 2\n';
/** Bounds on what unpacking accepts (the template is about 1,100 files and 40 MB). */
const PACK_MAX_BYTES = 256 << 20;
const PACK_MAX_FILES = 20_000;

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
  return { startParams: [...defaultStartParams(), '-c', `shared_buffers=${PGLITE_SHARED_BUFFERS}`, '-c', `max_wal_size=${PGLITE_MAX_WAL}`, '-c', 'min_wal_size=32MB'] };
}

let defaults: string[] | undefined;
function defaultStartParams(): string[] {
  if (!defaults) throw new Error('loadPglite() first');
  return defaults;
}

/**
 * V8 flags that keep WebAssembly on its baseline compiler (Liftoff). `--liftoff-only` alone did
 * that on Node 20 and 22; on Node 24 (V8 13.6), set at run time, dynamic tier-up still compiled
 * PGlite's hottest functions with TurboFan (66 of them in a few hundred queries) and a control
 * plane's first start took 306 MB of RSS instead of 195 in a 1 GiB memory cgroup (issue 11).
 * Turning both tier-up flags off with it keeps every function on Liftoff on all three; turning
 * off dynamic tiering without `--liftoff-only` would compile everything with TurboFan up front.
 */
export const PGLITE_WASM_FLAGS = '--liftoff-only --no-wasm-tier-up --no-wasm-dynamic-tiering';

/**
 * Imports PGlite (lazily: Postgres deployments never load the WASM). First tells V8 to run
 * WebAssembly with its baseline compiler only (PGLITE_WASM_FLAGS): tiering Postgres' hot
 * functions up to TurboFan cost about 0.45 s of CPU at every start and 40 MB of RSS for code, and
 * measured no faster per query afterwards (an insert and a select by key: about 0.9 ms of CPU
 * either way). The flags are process-wide; the control plane runs no other WebAssembly on a hot
 * path.
 */
export async function loadPglite(): Promise<typeof PGlite> {
  setFlagsFromString(PGLITE_WASM_FLAGS);
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
export function seedFromTemplate(dataDir: string, migrationsDir: string, templateDir = PGLITE_TEMPLATE_DIR, packFile = PGLITE_TEMPLATE_PACK): boolean {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return false;
  const stamp = templateStamp(migrationsDir);
  const fromDir = existsSync(join(templateDir, 'PG_VERSION')) && readStamp(templateDir) === stamp;
  if (!fromDir && readPackStamp(packFile) !== stamp) return false;
  if (existsSync(dataDir)) {
    if (readdirSync(dataDir).length > 0) return false;
    rmdirSync(dataDir);
  }
  mkdirSync(dirname(dataDir), { recursive: true, mode: 0o700 });
  const tmp = `${dataDir}.seed-${randomBytes(4).toString('hex')}`;
  try {
    if (fromDir) copyTemplateDir(templateDir, tmp);
    else unpackTemplate(packFile, tmp);
    chmodSync(tmp, 0o700);
    renameSync(tmp, dataDir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return true;
}

/** Files at least this big are copied without their trailing zeros (see copyTemplateDir). */
const SPARSE_FROM = 1 << 20;

/**
 * Copies the template cluster (without its stamp): one readdir per directory and one copy per
 * file, fewer system calls than `cpSync`'s checks. The 16 MB WAL segment is half zeros after
 * its last record; big files are written up to their last non-zero byte and then extended to
 * their size (the rest reads back as zeros, as a fresh segment does), so a first start writes
 * about 8 MB less on a disk that is often the slowest part of it (issue 11).
 */
function copyTemplateDir(from: string, to: string): void {
  mkdirSync(to, { mode: 0o700 });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isDirectory()) copyTemplateDir(src, dst);
    else if (e.isFile() && e.name !== STAMP) {
      const size = statSync(src).size;
      if (size < SPARSE_FROM) {
        copyFileSync(src, dst);
        continue;
      }
      const data = readFileSync(src);
      let end = data.length;
      while (end > 0 && data[end - 1] === 0) end--;
      writeFileSync(dst, data.subarray(0, end), { mode: statSync(src).mode & 0o777 });
      truncateSync(dst, size);
    }
  }
}

/** The stamp line of a template pack, or undefined when there is no (readable) pack. */
function readPackStamp(file: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const head = Buffer.alloc(512);
    const text = head.subarray(0, readSync(fd, head, 0, head.length, 0)).toString('latin1');
    if (!text.startsWith(PACK_MAGIC)) return undefined;
    const end = text.indexOf('\n', PACK_MAGIC.length);
    return end < 0 ? undefined : text.slice(PACK_MAGIC.length, end);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

interface PackEntry {
  path: string;
  size: number;
  mode: number;
}

/**
 * Writes `templateDir` (a built template, stamp included) as one file: the magic line, the stamp
 * line, then brotli of a 4-byte index length, the JSON index (every directory; path, size, mode
 * of every file) and
 * the files' bytes in index order.
 */
export function packTemplate(templateDir: string, packFile: string): void {
  const stamp = readStamp(templateDir);
  if (!stamp) throw new Error(`${templateDir} is not a built template (no ${STAMP})`);
  const entries: PackEntry[] = [];
  const dirs: string[] = [];
  const bodies: Buffer[] = [];
  const rel = (path: string) => relative(templateDir, path).split(sep).join('/');
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        dirs.push(rel(path)); // Postgres needs its empty directories too (pg_tblspc, pg_notify ...)
        walk(path);
      } else if (e.isFile() && e.name !== STAMP) {
        const body = readFileSync(path);
        entries.push({ path: rel(path), size: body.length, mode: statSync(path).mode & 0o777 });
        bodies.push(body);
      }
    }
  };
  walk(templateDir);
  const index = Buffer.from(JSON.stringify({ dirs, files: entries }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(index.length);
  const raw = Buffer.concat([len, index, ...bodies]);
  // Quality 7 with a 16 MB window: 1.6 MB in about 1.5 s (11 saves 0.2 MB for 50 s).
  const packed = brotliCompressSync(raw, {
    params: { [zlib.BROTLI_PARAM_QUALITY]: 7, [zlib.BROTLI_PARAM_LGWIN]: 24, [zlib.BROTLI_PARAM_SIZE_HINT]: raw.length },
  });
  const tmp = `${packFile}.tmp-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, Buffer.concat([Buffer.from(`${PACK_MAGIC}${stamp}\n`, 'latin1'), packed]));
  renameSync(tmp, packFile);
}

/** Unpacks a template pack into the new directory `dest` (bounded; paths stay inside `dest`). */
function unpackTemplate(packFile: string, dest: string): void {
  const file = readFileSync(packFile);
  const start = file.indexOf(0x0a, PACK_MAGIC.length) + 1;
  const raw = brotliDecompressSync(file.subarray(start), { maxOutputLength: PACK_MAX_BYTES });
  const indexLength = raw.readUInt32BE(0);
  const index = JSON.parse(raw.subarray(4, 4 + indexLength).toString('utf8')) as { dirs: string[]; files: PackEntry[] };
  const entries = index.files;
  if (!Array.isArray(entries) || !Array.isArray(index.dirs) || entries.length + index.dirs.length > PACK_MAX_FILES) throw new Error(`${packFile}: bad index`);
  const safe = (p: unknown): p is string => typeof p === 'string' && /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(p) && !p.split('/').some((x) => x === '..' || x === '.');
  mkdirSync(dest, { mode: 0o700 });
  for (const d of index.dirs) {
    if (!safe(d)) throw new Error(`${packFile}: bad path ${JSON.stringify(d)}`);
    mkdirSync(join(dest, ...d.split('/')), { recursive: true, mode: 0o700 });
  }
  let at = 4 + indexLength;
  for (const e of entries) {
    if (!safe(e.path)) throw new Error(`${packFile}: bad path ${JSON.stringify(e.path)}`);
    if (!Number.isInteger(e.size) || e.size < 0 || at + e.size > raw.length) throw new Error(`${packFile}: truncated at ${e.path}`);
    const path = join(dest, ...e.path.split('/'));
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, raw.subarray(at, at + e.size), { mode: (e.mode & 0o777) | 0o600 });
    at += e.size;
  }
  if (at !== raw.length) throw new Error(`${packFile}: ${raw.length - at} bytes after the last file`);
}

/**
 * Makes `packFile` from the template unless it already holds the template's stamp and is not
 * older than the template (a template rebuilt with the same stamp has new bytes, e.g. its
 * pg_control: the pack must follow it).
 */
export function ensureTemplatePack(templateDir = PGLITE_TEMPLATE_DIR, packFile = PGLITE_TEMPLATE_PACK): 'packed' | 'current' {
  const stamp = readPackStamp(packFile);
  if (stamp !== undefined && stamp === readStamp(templateDir) && statSync(packFile).mtimeMs >= statSync(join(templateDir, STAMP)).mtimeMs) return 'current';
  packTemplate(templateDir, packFile);
  return 'packed';
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
