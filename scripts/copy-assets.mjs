// Copies non-TypeScript files the built program reads at run time (SQL migrations) into dist/,
// and makes the embedded database's template cluster (a directory, and one compressed file for the package).
import { cpSync, existsSync } from 'node:fs';

const assets = [['control/db/migrations', 'dist/control/db/migrations']];
for (const [from, to] of assets) {
  if (existsSync(from)) cpSync(from, to, { recursive: true });
}

// The embedded database's template cluster (control/db/pglite.ts): made once per PGlite version and set of migrations,
// so a first start copies it instead of running initdb. TUNNEL_SKIP_PGLITE_TEMPLATE=1 skips it.
if (!process.env.TUNNEL_SKIP_PGLITE_TEMPLATE && existsSync('dist/control/db/client.js')) {
  const { buildEmbeddedTemplate } = await import('../dist/control/db/client.js');
  const t0 = Date.now();
  const result = await buildEmbeddedTemplate();
  if (result === 'built') process.stderr.write(`built the embedded database template in ${Date.now() - t0} ms\n`);
  // The same template as one compressed file: what the npm package carries (package.json "files").
  const { ensureTemplatePack } = await import('../dist/control/db/pglite.js');
  const t1 = Date.now();
  if (ensureTemplatePack() === 'packed') process.stderr.write(`packed the embedded database template in ${Date.now() - t1} ms\n`);
}
