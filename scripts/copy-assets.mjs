// Copies non-TypeScript files the built program reads at run time (SQL migrations) into dist/.
import { cpSync, existsSync } from 'node:fs';

const assets = [['control/db/migrations', 'dist/control/db/migrations']];
for (const [from, to] of assets) {
  if (existsSync(from)) cpSync(from, to, { recursive: true });
}
