import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { WindowBudget } from '../../node/adaptive-window.js';
import { remoteSoftware } from '../../node/ssh2-internals.js';
import { RELAY_SOFTWARE, isSoftware } from '../../protocol/ssh-idents.js';

const MiB = 1024 * 1024;

/** TUNNEL_WINDOW_BUDGET: whole MiB the process's channels may grow their windows by together (0: off). */
function budgetFromEnv(env: NodeJS.ProcessEnv): number {
  const v = env.TUNNEL_WINDOW_BUDGET;
  if (v === undefined || v === '') return 128 * MiB;
  const n = /^\d{1,6}$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n * MiB : 128 * MiB;
}

/**
 * The CLI's side of adaptive windows (node/adaptive-window.ts): channels to Tunnel's relay grow
 * their receive window with the delivered data, up to 32 MiB each and 128 MiB for the process
 * (one `tunnel` process rarely has more than a few busy channels; TUNNEL_WINDOW_BUDGET=MiB
 * changes it, 0 turns growth off). Any other SSH server gets ssh2's standard 2 MiB window.
 */
export const CLI_WINDOWS = new WindowBudget({ budgetBytes: budgetFromEnv(process.env), channelMaxBytes: 32 * MiB });

/** Puts `channel` (from `client`) under the CLI's window budget when the server is Tunnel's relay. */
export function adaptWindow(client: Client, channel: Duplex): void {
  if (isSoftware(remoteSoftware(client), RELAY_SOFTWARE)) CLI_WINDOWS.adopt(channel);
}
