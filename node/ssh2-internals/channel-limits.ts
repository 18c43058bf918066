import type { Client, Connection } from 'ssh2';
import { channelsOf, protocolOf } from './protocol.js';

/** The smallest maximum packet size a peer may announce for a channel (see enforceChannelLimits). */
export const MIN_CHANNEL_PACKET = 1024;

/**
 * How a peer broke a channel limit (enforceChannelLimits), `kind` named as the relay's close
 * reason (node/close-reasons.ts): data of `bytes` on `channel` (this side's id) whose window left
 * was `window`, or a channel open (`type`) or confirmation announcing `packetSize` under `min`.
 */
export type ChannelLimitViolation =
  | { kind: 'window_exceeded'; channel: number; window: number; bytes: number }
  | { kind: 'packet_size_too_small'; packetSize: number; min: number; type: string };

/**
 * Refuses a peer that breaks one of two channel limits; `onViolation` is called once, for the
 * first (it closes the connection), and nothing more is handed to ssh2 on any channel of the
 * connection. Works for a server Connection and a connected Client (ssh2 creates the Client's
 * protocol in `connect()`).
 *
 * - Channel data beyond the window this side granted (`window_exceeded`). ssh2 (server.js and
 *   client.js CHANNEL_DATA, client.js CHANNEL_EXTENDED_DATA) drops a packet only when the window
 *   is exactly 0; a packet larger than what is left takes `incoming.window` below 0, and from
 *   then on every packet is pushed into the channel's readable side whether or not anyone reads
 *   it: a peer that sends one odd-sized packet past the window, on a channel whose reader is
 *   paused (the relay's bridge pauses Y's channel while X is slow), made the relay hold
 *   everything it sent (256 MiB in test/node/hostile-memory). RFC 4254 5.2: the sender may not
 *   send more than the window. OpenSSH disconnects a peer that ignores the window too. So a
 *   packet longer than the window left is not handed to ssh2.
 * - A maximum packet size below MIN_CHANNEL_PACKET in a CHANNEL_OPEN or a
 *   CHANNEL_OPEN_CONFIRMATION (`packet_size_too_small`). ssh2 writes a channel's data in slices
 *   of at most that size (lib/Channel.js `_write`) and takes any value: with 0 its loop never
 *   advances and the process spins forever (one direct-tcpip open from any member stopped the
 *   relay, even its /metrics), and with 1 every byte becomes a packet of its own (the relay
 *   spent about 6 CPU seconds per MB and blocked for seconds at a time; test/node/hostile-limits).
 *   OpenSSH, PuTTY, paramiko, Go and ssh2 announce 16 KiB or more (paramiko never less than
 *   4 KiB). The open or confirmation is not handed to ssh2.
 */
export function enforceChannelLimits(conn: Connection | Client, onViolation: (v: ChannelLimitViolation) => void): void {
  const proto = protocolOf(conn);
  const chanMgr = channelsOf(conn);
  const open = proto._handlers.CHANNEL_OPEN;
  const confirm = proto._handlers.CHANNEL_OPEN_CONFIRMATION;
  if (!open || !confirm) throw new Error('ssh2 internals changed: CHANNEL_OPEN or CHANNEL_OPEN_CONFIRMATION handler missing');
  let violated = false;
  const violation = (v: ChannelLimitViolation): void => {
    violated = true;
    onViolation(v);
  };
  const windowed = (name: 'CHANNEL_DATA' | 'CHANNEL_EXTENDED_DATA'): void => {
    const orig = proto._handlers[name];
    if (!orig) throw new Error(`ssh2 internals changed: ${name} handler missing`);
    proto._handlers[name] = (p, recipient, data, ...rest) => {
      if (violated) return;
      // A server Session wraps its channel (server.js: `channel._channel`); the relay refuses sessions.
      const entry = chanMgr.get(recipient) as { incoming?: { window?: unknown }; _channel?: { incoming?: { window?: unknown } } } | undefined;
      const window = entry?.incoming?.window ?? entry?._channel?.incoming?.window;
      if (typeof window === 'number' && Buffer.isBuffer(data) && data.length > window) {
        return violation({ kind: 'window_exceeded', channel: recipient, window, bytes: data.length });
      }
      orig(p, recipient, data, ...rest);
    };
  };
  windowed('CHANNEL_DATA');
  windowed('CHANNEL_EXTENDED_DATA');
  const tooSmall = (packetSize: unknown, type: string): boolean => {
    if (violated) return true;
    if (typeof packetSize !== 'number' || packetSize >= MIN_CHANNEL_PACKET) return false;
    violation({ kind: 'packet_size_too_small', packetSize, min: MIN_CHANNEL_PACKET, type });
    return true;
  };
  proto._handlers.CHANNEL_OPEN = (p, info) => {
    if (!tooSmall(info.packetSize, info.type)) open(p, info);
  };
  proto._handlers.CHANNEL_OPEN_CONFIRMATION = (p, info) => {
    if (!tooSmall(info.packetSize, 'confirmation')) confirm(p, info);
  };
}
