import type { Connection } from 'ssh2';
import { channelsOf, protocolOf } from './protocol.js';

interface ChannelInternals {
  outgoing?: { state?: string };
}

/**
 * Drops channel requests that arrive for a channel the relay has already closed (sent
 * CHANNEL_CLOSE). ssh2 answers such a request with CHANNEL_FAILURE; a client that has meanwhile
 * received the close and freed the channel then gets a reply for a channel it no longer knows.
 * PuTTY treats that as fatal ("Received SSH2_MSG_CHANNEL_FAILURE for nonexistent channel") and
 * drops the whole connection; it sends `winadj@putty.projects.tartarus.org` with want-reply
 * during every bulk transfer. OpenSSH's sshd sends nothing more on a channel once it has sent
 * CHANNEL_CLOSE (RFC 4254 §5.3), and neither does the relay now.
 */
export function dropRequestsAfterClose(conn: Connection): void {
  const proto = protocolOf(conn);
  const orig = proto._handlers.CHANNEL_REQUEST;
  if (!orig) throw new Error('ssh2 internals changed: CHANNEL_REQUEST handler missing');
  const chanMgr = channelsOf(conn);
  proto._handlers.CHANNEL_REQUEST = (p, recipient, type, wantReply, data) => {
    const channel = chanMgr.get(recipient) as ChannelInternals | undefined;
    const state = typeof channel === 'object' && channel !== null ? channel.outgoing?.state : undefined;
    if (state === 'closing' || state === 'closed') return;
    orig(p, recipient, type, wantReply, data);
  };
}
