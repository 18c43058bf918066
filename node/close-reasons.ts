import type { Connection } from 'ssh2';
import type { LeaseEndReason } from './leases/lease-registry.js';
import { DISCONNECT, disconnectWithReason, MIN_CHANNEL_PACKET, socketOf, type ChannelLimitViolation } from './ssh2-internals.js';

/** Why the relay closes a connection (node/connection.ts `end`). */
export type CloseReason = LeaseEndReason | 'lease_untrusted' | 'credential_rejected' | 'revocations_stale' | 'too_many_auth_attempts' | 'rekey_rate' | 'renewal_rate' | 'forward_rate' | 'keepalive_timeout' | 'shutdown' | 'internal_error' | 'send_stalled' | 'window_exceeded' | 'packet_size_too_small';

/** The SSH_MSG_DISCONNECT a client gets for each reason the relay closes its connection. */
export const DISCONNECT_TEXT: Record<CloseReason, { code: number; text: string }> = {
  lease_expired: { code: DISCONNECT.BY_APPLICATION, text: 'lease expired; get a new certificate (tunnel cert) and reconnect' },
  lease_revoked: { code: DISCONNECT.BY_APPLICATION, text: 'lease revoked' },
  lease_untrusted: { code: DISCONNECT.BY_APPLICATION, text: 'the key that signed this lease was withdrawn; get a new certificate (tunnel cert) and reconnect' },
  credential_rejected: { code: DISCONNECT.BY_APPLICATION, text: 'relay out of service: the control plane no longer accepts its credential; reconnect later' },
  revocations_stale: { code: DISCONNECT.BY_APPLICATION, text: 'relay out of service: it cannot reach the control plane to learn revocations; reconnect later' },
  too_many_auth_attempts: { code: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE, text: 'too many authentication failures' },
  rekey_rate: { code: DISCONNECT.BY_APPLICATION, text: 'too many key exchanges (--max-rekeys-per-minute on the relay)' },
  renewal_rate: { code: DISCONNECT.BY_APPLICATION, text: 'too many lease renewals (--max-renewals-per-minute on the relay)' },
  forward_rate: { code: DISCONNECT.BY_APPLICATION, text: 'too many port-forwarding requests (--max-forwards-per-minute on the relay)' },
  keepalive_timeout: { code: DISCONNECT.BY_APPLICATION, text: 'keepalive timeout' },
  shutdown: { code: DISCONNECT.BY_APPLICATION, text: 'relay shutting down; reconnect' },
  internal_error: { code: DISCONNECT.BY_APPLICATION, text: 'internal error on the relay; reconnect' },
  send_stalled: { code: DISCONNECT.BY_APPLICATION, text: 'not reading: the relay stopped sending to this client' },
  window_exceeded: { code: DISCONNECT.PROTOCOL_ERROR, text: 'channel data beyond the window the relay granted' },
  packet_size_too_small: { code: DISCONNECT.PROTOCOL_ERROR, text: `channel maximum packet size below ${MIN_CHANNEL_PACKET} bytes` },
};

/** How the relay counts (`refused_requests_total{type}`) and logs each channel limit a peer broke. */
export const LIMIT_REFUSALS: Record<ChannelLimitViolation['kind'], { type: string; msg: string }> = {
  window_exceeded: { type: 'channel_data_beyond_window', msg: 'peer sent channel data beyond the window; disconnecting' },
  packet_size_too_small: { type: 'channel_packet_size_too_small', msg: 'peer announced a channel maximum packet size too small; disconnecting' },
};

/**
 * Closes a connection's socket for `reason` (node/connection.ts `end`): at once (`now`), or with
 * the reason's SSH_MSG_DISCONNECT and a 2 s deadline (at once when sending it throws).
 */
export function disconnectPeer(conn: Connection, reason: CloseReason, now: boolean): void {
  const sock = socketOf(conn);
  if (now) {
    sock.destroy();
    return;
  }
  const { code, text } = DISCONNECT_TEXT[reason];
  try {
    disconnectWithReason(conn, code, text);
  } catch {
    sock.destroy();
  }
  setTimeout(() => sock.destroy(), 2000).unref();
}
