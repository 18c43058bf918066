// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'control/db/migrations/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
    },
  },
  {
    // node:http only through shared/node-http.ts (require, not import): an ES import of it loads
    // Node's bundled undici and perf_hooks on Node 22 and later, 11-14 MB of the idle relay's RSS.
    files: ['node/**/*.ts', 'shared/**/*.ts', 'protocol/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        ...['node:http', 'http'].map((name) => ({
          name,
          allowTypeImports: true,
          message: 'import { http } from shared/node-http.ts: an ES import of node:http loads undici and perf_hooks on Node 22+.',
        })),
      ],
    },
  },
  {
    // Entry points and scripts may talk to the console.
    files: ['**/main.ts', 'scripts/**', 'bench/**', 'infra/**', 'test/**', '**/*.test.ts'],
    rules: { 'no-console': 'off' },
  },
);
