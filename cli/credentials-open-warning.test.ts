/**
 * The warning about a credentials file open to group or others (settings.ts warnIfOpen) judges the
 * file the tokens were read from, by the mode fstat gave on the descriptor they were read through,
 * not by a second stat of the path: by then the path may name another file (a login or a renewal
 * in another process replaces it by a rename). The replacement is made between the read's open
 * and its read (withFirstReadSync), in process.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { withFirstReadSync } from '../shared/testing/first-read-sync.js';
import { readCredentials } from './settings.js';
import { tempDir } from '../shared/testing/temp-dir.js';

const creds = (user: string) => JSON.stringify({ server: 'http://127.0.0.1:9', user, access_token: 'at', access_expires_at: Date.now() + 600_000 });

/** A home with credentials.json at `mode` and another login beside it at `nextMode`, to be renamed over it. */
function home(mode: number, nextMode: number) {
  const homeDir = tempDir('tunnel-cli-');
  const dir = join(homeDir, '.config', 'tunnel');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'credentials.json');
  writeFileSync(file, creds('read'));
  chmodSync(file, mode);
  const next = join(dir, 'next.json');
  writeFileSync(next, creds('next'));
  chmodSync(next, nextMode);
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (d: Buffer) => (text += d.toString()));
  const ctx = { env: {}, homeDir, stderr };
  const readReplaced = () =>
    withFirstReadSync(
      () => renameSync(next, file),
      () => readCredentials(ctx),
    );
  return { file, ctx, readReplaced, stderr: () => text };
}

describe('credentials.json open to others: the warning judges the file read', () => {
  it('a 0644 file replaced by a 0600 one while it is read: its tokens were open to others, one warning, once', () => {
    const h = home(0o644, 0o600);
    assert.equal(h.readReplaced()?.user, 'read');
    assert.equal(h.stderr(), `tunnel: warning: ${h.file} is open to others (mode 0644), and its tokens log in as you: chmod 600 it\n`);
    chmodSync(h.file, 0o644);
    readCredentials(h.ctx);
    assert.equal(h.stderr().split('\n').filter(Boolean).length, 1, 'once per file per process');
  });

  it('a 0600 file replaced by a 0644 one while it is read: no warning for the file read', () => {
    const h = home(0o600, 0o644);
    assert.equal(h.readReplaced()?.user, 'read');
    assert.equal(h.stderr(), '');
  });
});
