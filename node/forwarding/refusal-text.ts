import { OPEN_FAILURE } from '../ssh2-internals.js';

/**
 * What a refused channel open tells the person at the other end: an RFC 4254 reason code and a
 * one-line description (OpenSSH prints "open failed: connect failed: <description>"). Log and
 * metric reasons stay the stable snake_case codes; this is their human text.
 */
export function channelRefusal(
  reason: string,
  f: { destIP?: unknown; destPort?: unknown; limit?: number; timeoutMs?: number; err?: unknown; ports?: unknown },
): { code: number; text: string } {
  const dest = `${String(f.destIP)}:${String(f.destPort)}`;
  const { ADMINISTRATIVELY_PROHIBITED: PROHIBITED, CONNECT_FAILED, RESOURCE_SHORTAGE } = OPEN_FAILURE;
  switch (reason) {
    case 'unauthenticated':
      return { code: PROHIBITED, text: 'not authenticated' };
    case 'not_in_lease':
      return { code: PROHIBITED, text: `${dest} is not in this lease` };
    case 'wrong_lease_kind':
      return { code: PROHIBITED, text: 'this lease does not open channels (use an open or egress lease)' };
    case 'draining':
      return { code: CONNECT_FAILED, text: 'the relay is shutting down; reconnect' };
    case 'too_many_pending_opens':
      return { code: RESOURCE_SHORTAGE, text: `too many channel opens waiting on this connection (limit ${f.limit ?? '?'})` };
    case 'too_many_channels':
      return { code: RESOURCE_SHORTAGE, text: `too many open channels on this connection (limit ${f.limit ?? '?'})` };
    case 'member_channels':
      return { code: RESOURCE_SHORTAGE, text: `you hold ${f.limit ?? '?'} channels through this relay, all your connections together; close some first` };
    case 'opener_share':
      return { code: RESOURCE_SHORTAGE, text: `you hold your share of ${dest}'s channels (limit ${f.limit ?? '?'}); close some first` };
    case 'exposure_full':
      return { code: RESOURCE_SHORTAGE, text: `${dest} has no free channels now; try again later` };
    case 'exposure_offline':
      return { code: CONNECT_FAILED, text: `${dest} is not online on this relay` };
    case 'no_such_port':
      return { code: CONNECT_FAILED, text: `${String(f.destIP)} is exposed on port ${String(f.ports)}, not ${String(f.destPort)}` };
    case 'open_timeout':
      return { code: CONNECT_FAILED, text: `${dest}: the exposing host did not accept the channel within ${Math.round((f.timeoutMs ?? 0) / 1000)} s` };
    case 'open_failed':
      return { code: CONNECT_FAILED, text: `${dest}: the exposing host refused the channel` };
    case 'egress_lease_revoked':
      return { code: PROHIBITED, text: 'lease revoked' };
    case 'egress_lease_expired':
      return { code: PROHIBITED, text: 'lease expired' };
    case 'egress_lease_inactive':
      return { code: PROHIBITED, text: `${dest}: egress for this lease is not active on this relay` };
    case 'egress_no_port_block':
      return { code: RESOURCE_SHORTAGE, text: 'the relay has no free egress source ports now; try again later' };
    case 'egress_connect_timeout':
      return { code: CONNECT_FAILED, text: `${dest}: connection timed out` };
    case 'egress_resolve_failed':
      return { code: CONNECT_FAILED, text: `${dest}: cannot resolve the target` };
    case 'egress_connect_failed':
      return { code: CONNECT_FAILED, text: `${dest}: ${typeof f.err === 'string' ? f.err.slice(0, 200) : 'connection failed'}` };
    case 'egress_firewall_failed':
      return { code: CONNECT_FAILED, text: `${dest}: the relay could not open its egress firewall for this target` };
    default:
      return { code: PROHIBITED, text: `refused (${reason})` };
  }
}
