import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './run.js';
import { CliError, EXIT } from './errors.js';
import { tempDir } from '../shared/testing/temp-dir.js';
import { testContext } from './testing/test-context.js';
import { configDir, readCredentials, writeCredentials } from './settings.js';

describe('where the CLI keeps its state', () => {
  it('an absolute XDG_CONFIG_HOME is used; a relative one is ignored (XDG spec) for ~/.config', async () => {
    const abs = tempDir('tunnel-xdg-');
    assert.equal(configDir(testContext({ env: { XDG_CONFIG_HOME: abs } })), join(abs, 'tunnel'));
    for (const rel of ['rel', './rel', '../rel', 'rel/']) {
      const ctx = testContext({ env: { XDG_CONFIG_HOME: rel } });
      assert.equal(configDir(ctx), join(ctx.homeDir, '.config', 'tunnel'), rel);
    }
    // What a command reads follows it: credentials written under ~/.config are the ones found.
    const ctx = testContext({ env: { XDG_CONFIG_HOME: 'tunnel-xdg-relative-should-be-ignored' } });
    writeCredentials(ctx, { server: 'https://control.test', user: 'bob', access_token: 'at', access_expires_at: Date.now() + 600_000 });
    assert.ok(existsSync(join(ctx.homeDir, '.config', 'tunnel', 'credentials.json')));
    assert.ok(!existsSync(join(process.cwd(), 'tunnel-xdg-relative-should-be-ignored')));
    assert.equal(readCredentials(ctx)?.user, 'bob');
    assert.equal(await run(['whoami', '--server', 'https://other.test'], ctx), EXIT.NOT_LOGGED_IN);
    assert.match(ctx.err(), /logged in to https:\/\/control\.test/);
  });

  it('a config directory that cannot be made is one line (a CliError), not an internal error', () => {
    const file = join(tempDir('tunnel-xdg-'), 'a-file');
    writeFileSync(file, '');
    const ctx = testContext({ env: { XDG_CONFIG_HOME: file } });
    assert.throws(
      () => writeCredentials(ctx, { server: 'https://control.test', access_token: 'at', access_expires_at: 0 }),
      (err: unknown) => err instanceof CliError && err.exitCode === EXIT.ERROR && /^cannot write .*a-file\/tunnel\/credentials\.json \(ENOTDIR\)$/.test(err.message),
    );
  });
});
