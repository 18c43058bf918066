import { join } from 'node:path';
import { xdgBaseDir } from '../../shared/xdg-base-dir.js';

/**
 * Where the all-in-one keeps its data (the control plane's in `control/`, the relay's in `node/`):
 * --data-dir, else TUNNEL_DATA_DIR, else `$XDG_DATA_HOME/tunnel` (`~/.local/share/tunnel` when
 * XDG_DATA_HOME is unset, empty or relative).
 */
export function allInOneDataDir(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  return flag ?? (env.TUNNEL_DATA_DIR || join(xdgBaseDir('XDG_DATA_HOME', env), 'tunnel'));
}
