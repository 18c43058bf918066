import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createMemoryLogger } from '../../shared/logger.js';
import { ensureSelfSigned, readTlsFiles, SELF_SIGNED_CERT, SELF_SIGNED_KEY, TLS_FILE_MAX_BYTES } from './server-tls.js';

const root = mkdtempSync(join(tmpdir(), 'tunnel-server-tls-'));
after(() => rmSync(root, { recursive: true, force: true }));

const NOW = new Date('2026-12-01T00:00:00Z');

describe('server TLS files', () => {
  const dir = join(root, 'tls');
  const pair = ensureSelfSigned(dir, ['localhost'], NOW, createMemoryLogger());

  it('reads a pair that belongs together, with the leaf pin', () => {
    const again = readTlsFiles(pair.certFile, pair.keyFile);
    assert.equal(again.pin, pair.pin);
    assert.equal(again.key, readFileSync(pair.keyFile, 'utf8'));
  });

  it('refuses a certificate or key file past its bound, /dev/zero, and a FIFO, instead of reading on or waiting', () => {
    const big = join(root, 'big.pem');
    writeFileSync(big, `${readFileSync(pair.certFile, 'utf8')}${' '.repeat(TLS_FILE_MAX_BYTES)}`);
    assert.throws(() => readTlsFiles(big, pair.keyFile), { code: 'CONFIG_INVALID', message: `cannot read the TLS certificate or key: ${big} is longer than ${TLS_FILE_MAX_BYTES} bytes` });
    assert.throws(() => readTlsFiles(pair.certFile, '/dev/zero'), { code: 'CONFIG_INVALID', message: /^cannot read the TLS certificate or key: \/dev\/zero is longer than/ });
    const fifo = join(root, 'key.fifo');
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => readTlsFiles(pair.certFile, fifo), { code: 'CONFIG_INVALID', message: `cannot read the TLS certificate or key: ${fifo} is a pipe or FIFO` });
  });

  it('keeps the self-signed pair it made, and resets a key mode open to others with a warning', () => {
    const logger = createMemoryLogger();
    chmodSync(join(dir, SELF_SIGNED_KEY), 0o644);
    const again = ensureSelfSigned(dir, ['localhost'], NOW, logger);
    assert.equal(again.pin, pair.pin, 'the same certificate, not a new one');
    assert.equal(statSync(join(dir, SELF_SIGNED_KEY)).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, SELF_SIGNED_CERT)).mode & 0o777, 0o644);
    assert.deepEqual(logger.lines.map((l) => [l.level, l.msg]), [['warn', 'TLS key file was readable by others; reset its mode to 0600']]);
    const quiet = createMemoryLogger();
    ensureSelfSigned(dir, ['localhost'], NOW, quiet);
    assert.deepEqual(quiet.lines, []);
  });
});
