import type { Duplex } from 'node:stream';
import type { ChannelAllowance } from '../channel-memory.js';
import type { ForwardingHost } from './forwarding-host.js';
import { channelWindow, STANDARD_WINDOW } from '../ssh2-internals.js';

/**
 * A relay channel whose peer is not Tunnel's CLI (no adaptive window, node/adaptive-window.ts):
 * what the peer may send and what the relay holds unread together stay within the standard
 * 2 MiB window, as OpenSSH counts them. ssh2's own top-up grants a fresh window whenever it fell
 * to 1 MiB while its readable side is under its 2 MiB high-water mark, so a channel the bridge
 * paused (the other side slow) held its 2 MiB readable buffer plus the 2 MiB window on top: a
 * member with an OpenSSH or ssh2 client and its own exposure that never reads made the relay
 * hold 4 MiB per channel (64 MiB for 16 channels). Granted here the same way (once half the
 * window is used), but only for what the reader took. With an `allowance` (node/channel-memory.ts)
 * the channel holds at most what that allows, the standard window when the relay's channel memory
 * has room.
 */
export function holdToWindow(ch: Duplex, allowance?: ChannelAllowance): void {
  const w = channelWindow(ch);
  const size = allowance ? () => allowance.size() : () => STANDARD_WINDOW;
  const topUp = (): void => {
    const most = size();
    const missing = most - w.window() - w.readable();
    if (missing >= most / 2) w.grant(missing);
  };
  w.hook({ received: topUp, drained: topUp, consumed: topUp });
}

/**
 * Puts one of a connection's channels under `allowance`: an adaptive window when the peer is
 * Tunnel's CLI and growth is on (node/adaptive-window.ts), else at most the allowance, the way
 * OpenSSH counts it (holdToWindow). `accepted`: this side confirmed the channel just now.
 */
export function governWindow(o: Pick<ForwardingHost, 'adaptive' | 'ctx' | 'windowOwner' | 'pathRtt'>, ch: Duplex, allowance: ChannelAllowance, accepted: boolean): void {
  if (!(o.adaptive && o.ctx.windows.adopt(ch, { accepted, owner: o.windowOwner(), pathRtt: o.pathRtt, base: allowance }))) holdToWindow(ch, allowance);
}
