import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { promisify } from 'node:util';

/**
 * The embedded database's WebAssembly stays on V8's baseline compiler (control/db/pglite.ts,
 * PGLITE_WASM_FLAGS). A child process opens a database seeded from the build's template the way
 * the control plane does and runs a few hundred queries, with V8 tracing every function it
 * compiles and with which compiler. On Node 24 `--liftoff-only` alone let dynamic tier-up compile
 * PGlite's hottest functions with TurboFan (about 66 in this workload). The .ci/other-nodes smoke
 * runs this file on Node 22 and 24.
 */
const root = mkdtempSync(join(tmpdir(), 'tunnel-pglite-tiering-'));
after(() => rmSync(root, { recursive: true, force: true }));

const CHILD = `
const { loadPglite, pgliteOptions, seedFromTemplate } = await import(${JSON.stringify(join(import.meta.dirname, 'pglite.js'))});
const { MIGRATIONS_DIR } = await import(${JSON.stringify(join(import.meta.dirname, 'client.js'))});
const PGlite = await loadPglite();
const dir = ${JSON.stringify(join(root, 'db'))};
if (!seedFromTemplate(dir, MIGRATIONS_DIR)) throw new Error('no current template: npm run build makes it');
const db = new PGlite(dir, pgliteOptions());
for (let i = 0; i < 300; i++) await db.query('select count(*) from pg_class where relname like $1', ['%' + i]);
await db.close();
`;

it('PGlite runs on Liftoff only: no function is compiled with TurboFan', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--trace-wasm-compilation-times', '--input-type=module', '-e', CHILD], {
    maxBuffer: 64 << 20,
    timeout: 120_000,
  });
  const lines = stdout.split('\n');
  const liftoff = lines.filter((l) => /^Compiled function .* using Liftoff/.test(l)).length;
  const turbofan = lines.filter((l) => /using TurboFan/i.test(l));
  assert.ok(liftoff > 100, `V8's trace shows ${liftoff} functions compiled with Liftoff (the trace itself is what this test reads)`);
  assert.deepEqual(turbofan.slice(0, 3), [], `${turbofan.length} WebAssembly functions compiled with TurboFan on Node ${process.version}`);
});
