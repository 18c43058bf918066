/**
 * The software names in the SSH identification lines (RFC 4253 4.2) of Tunnel's own ends:
 * `SSH-2.0-tunnel-node` (the relay) and `SSH-2.0-tunnel-cli` (the CLI). Each end grows channel
 * windows beyond the standard 2 MiB only when the other end names itself one of these
 * (node/adaptive-window.ts); every other SSH peer keeps the standard behaviour.
 */
export const RELAY_SOFTWARE = 'tunnel-node';
export const CLI_SOFTWARE = 'tunnel-cli';

/** Whether an identification's software version (ssh2 `header.versions.software`) is `name`, optionally followed by `_VERSION`. */
export function isSoftware(software: string | undefined, name: string): boolean {
  return software === name || (software?.startsWith(`${name}_`) ?? false);
}
