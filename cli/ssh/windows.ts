import type { Duplex } from 'node:stream';
import type { Client } from 'ssh2';
import { WindowBudget } from '../../node/adaptive-window.js';
import { remoteSoftware } from '../../node/ssh2-internals.js';
import { RELAY_SOFTWARE, isSoftware } from '../../protocol/ssh-idents.js';
import { DEFAULT_WINDOW_BUDGET } from '../settings.js';

const MiB = 1024 * 1024;

/**
 * Puts a channel (from `client`) under the budget when the server is Tunnel's relay; `accepted`:
 * this side confirmed it just now (a `tcp connection` accepted), so the relay's first byte on it
 * is a round-trip sample (node/adaptive-window.ts).
 */
export type AdaptWindow = (client: Client, channel: Duplex, accepted?: boolean) => void;

/**
 * The CLI's side of adaptive windows (node/adaptive-window.ts): channels to Tunnel's relay grow
 * their receive window with the delivered data, up to 32 MiB each and `budgetBytes` for the
 * process (one `tunnel` process rarely has more than a few busy channels; the commands take it
 * from TUNNEL_WINDOW_BUDGET through cli/settings.ts, 0 turns growth off). Any other SSH server
 * gets ssh2's standard 2 MiB window.
 */
export function windowAdopter(budgetBytes: number): AdaptWindow {
  const budget = new WindowBudget({ budgetBytes, channelMaxBytes: 32 * MiB });
  return (client, channel, accepted = false) => {
    if (isSoftware(remoteSoftware(client), RELAY_SOFTWARE)) budget.adopt(channel, { accepted });
  };
}

/** With the default budget (benchmarks that stand in for the CLI). */
export const adaptWindow: AdaptWindow = windowAdopter(DEFAULT_WINDOW_BUDGET);
