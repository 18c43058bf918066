/** A flag or `TUNNEL_*` variable the relay cannot use; the message says how to fix it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
}
