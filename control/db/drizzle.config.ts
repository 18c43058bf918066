import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './control/db/schema/index.ts',
  out: './control/db/migrations',
});
