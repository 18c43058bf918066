import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/** The XDG base directories Tunnel uses, and where each is when its variable is not usable. */
const DEFAULTS = {
  XDG_CONFIG_HOME: ['.config'],
  XDG_DATA_HOME: ['.local', 'share'],
} as const;

/**
 * `$XDG_CONFIG_HOME` or `$XDG_DATA_HOME`, or its default under the home directory (`~/.config`,
 * `~/.local/share`) when the variable is unset, empty or relative: the XDG Base Directory spec
 * says a relative path in these variables is invalid and is to be ignored (used as is, it would
 * name another directory in every working directory). `homeDir` defaults to $HOME, then the
 * account's home directory.
 */
export function xdgBaseDir(
  name: keyof typeof DEFAULTS,
  env: Readonly<Record<string, string | undefined>>,
  homeDir: string = env.HOME || homedir(),
): string {
  const v = env[name];
  return v && isAbsolute(v) ? v : join(homeDir, ...DEFAULTS[name]);
}
