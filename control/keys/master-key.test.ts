import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createMemoryLogger } from '../../shared/logger.js';
import { MASTER_KEY_FILE_MAX_BYTES, resolveMasterKey } from './master-key.js';

const dir = mkdtempSync(join(tmpdir(), 'tunnel-master-key-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const KEY = Buffer.alloc(32, 7);
const given = (file: string) => resolveMasterKey({ masterKey: undefined, masterKeyFile: file, dataDir: dir }, createMemoryLogger());

describe('resolveMasterKey', () => {
  it('reads a key file as base64 or hex', () => {
    const b64 = join(dir, 'b64.key');
    writeFileSync(b64, `${KEY.toString('base64')}\n`, { mode: 0o600 });
    assert.deepEqual(given(b64), KEY);
    const hex = join(dir, 'hex.key');
    writeFileSync(hex, KEY.toString('hex'), { mode: 0o600 });
    assert.deepEqual(given(hex), KEY);
  });

  it('refuses a key file longer than its bound instead of reading it all (a path naming /dev/zero)', () => {
    const big = join(dir, 'big.key');
    writeFileSync(big, `${KEY.toString('base64')}\n${' '.repeat(MASTER_KEY_FILE_MAX_BYTES)}`, { mode: 0o600 });
    assert.throws(() => given(big), { code: 'CONFIG_INVALID', message: `cannot read the master key file ${big}: ${big} is longer than ${MASTER_KEY_FILE_MAX_BYTES} bytes` });
    assert.throws(() => given('/dev/zero'), { code: 'CONFIG_INVALID', message: /^cannot read the master key file \/dev\/zero: \/dev\/zero is longer than/ });
  });

  it('refuses a FIFO rather than waiting for a writer', () => {
    const fifo = join(dir, 'key.fifo');
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => given(fifo), { code: 'CONFIG_INVALID', message: `cannot read the master key file ${fifo}: ${fifo} is a pipe or FIFO` });
  });

  it('refuses a file that does not hold 32 bytes', () => {
    const short = join(dir, 'short.key');
    writeFileSync(short, Buffer.alloc(16).toString('base64'), { mode: 0o600 });
    assert.throws(() => given(short), { code: 'CONFIG_INVALID', message: /must hold 32 bytes/ });
  });

  it('embedded default: creates master.key 0600 once, and resets a mode open to others with a warning', () => {
    const data = join(dir, 'data');
    const logger = createMemoryLogger();
    const first = resolveMasterKey({ masterKey: undefined, masterKeyFile: undefined, dataDir: data }, logger);
    const file = join(data, 'master.key');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(logger.lines.map((l) => l.msg), ['created a master key next to the embedded database; set TUNNEL_MASTER_KEY_FILE to keep it elsewhere']);

    chmodSync(file, 0o644);
    const again = createMemoryLogger();
    assert.deepEqual(resolveMasterKey({ masterKey: undefined, masterKeyFile: undefined, dataDir: data }, again), first, 'the same key, not a new one');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(again.lines.map((l) => [l.level, l.msg]), [['warn', 'master key file was readable by others; reset its mode to 0600']]);
  });
});
