import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { WindowBudget } from '../../node/adaptive-window.js';
import { remoteSoftware } from '../../node/ssh2-internals.js';
import { RELAY_SOFTWARE, isSoftware } from '../../protocol/ssh-idents.js';

/**
 * The CLI's side of adaptive windows (node/adaptive-window.ts): channels to Tunnel's relay grow
 * their receive window with the delivered data, up to 32 MiB each and 128 MiB for the process
 * (one `tunnel` process rarely has more than a few busy channels). Any other SSH server gets
 * ssh2's standard 2 MiB window.
 */
export const CLI_WINDOWS = new WindowBudget({ budgetBytes: 128 * 1024 * 1024, channelMaxBytes: 32 * 1024 * 1024 });

/** Puts `channel` (from `client`) under the CLI's window budget when the server is Tunnel's relay. */
export function adaptWindow(client: Client, channel: Duplex): void {
  if (isSoftware(remoteSoftware(client), RELAY_SOFTWARE)) CLI_WINDOWS.adopt(channel);
}
