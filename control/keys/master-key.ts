import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../shared/logger.js';
import { ConfigError } from '../config.js';
import { readFileBoundedSyncWithMode, type BoundedRead } from '../../shared/read-file-bounded.js';
import { resetOpenMode } from '../../shared/reset-open-mode.js';

/** The most a master key file may hold: 32 bytes as hex (64 characters) or base64 (44), with room for whitespace. */
export const MASTER_KEY_FILE_MAX_BYTES = 1024;

/**
 * The key that seals private keys at rest: given (env or file), or, in the embedded default,
 * a file `master.key` in the data directory created with mode 0600 (with a warning, since the
 * key then sits next to the data it protects).
 */
export function resolveMasterKey(
  cfg: { masterKey: Buffer | undefined; masterKeyFile: string | undefined; dataDir: string },
  logger: Logger,
): Buffer {
  if (cfg.masterKey) return cfg.masterKey;
  if (cfg.masterKeyFile) return readKeyFile(cfg.masterKeyFile).key;
  const path = join(cfg.dataDir, 'master.key');
  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  try {
    writeFileSync(path, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    logger.warn('created a master key next to the embedded database; set TUNNEL_MASTER_KEY_FILE to keep it elsewhere', { path });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const { key, mode } = readKeyFile(path);
  resetOpenMode(path, mode, logger, 'master key file was readable by others; reset its mode to 0600');
  return key;
}

/** The key in `path`, at most MASTER_KEY_FILE_MAX_BYTES read (a FIFO, terminal or `/dev/zero` is refused), and the file's mode. */
function readKeyFile(path: string): { key: Buffer; mode: number } {
  let read: BoundedRead;
  try {
    read = readFileBoundedSyncWithMode(path, MASTER_KEY_FILE_MAX_BYTES);
  } catch (cause) {
    throw new ConfigError(`cannot read the master key file ${path}: ${(cause as Error).message}`);
  }
  const text = read.bytes.toString('utf8').trim();
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  if (key.length !== 32) throw new ConfigError(`master key file ${path} must hold 32 bytes as base64 or hex`);
  return { key, mode: read.mode };
}

/**
 * `tunnel-control gen-master-key FILE`: 32 random bytes, base64, in a new file of mode 0600.
 * An existing file is never overwritten (losing the key loses every sealed private key).
 */
export function writeNewMasterKey(path: string): void {
  try {
    writeFileSync(path, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new ConfigError(`${path} already exists; a master key is never overwritten (move it away first if you mean it)`);
    throw new ConfigError(`cannot write ${path}: ${code ?? (err as Error).message}`);
  }
  chmodSync(path, 0o600);
}
