import { chmodSync } from 'node:fs';
import type { Logger } from './logger.js';

/**
 * A secret file read with a mode open to group or others (as after a copy or an archive's
 * extraction) is set back to 0600, and `warning` logged with its path. `mode` is that of the file
 * that was read (readFileBoundedSyncWithMode: fstat on the descriptor read), not a second look at
 * the path, which may name another file by then.
 */
export function resetOpenMode(path: string, mode: number, logger: Logger, warning: string): void {
  if ((mode & 0o077) === 0) return;
  chmodSync(path, 0o600);
  logger.warn(warning, { path });
}
