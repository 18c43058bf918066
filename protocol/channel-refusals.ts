/**
 * Why the relay refused a channel (a `direct-tcpip` one, or `not_offered` for any other type), as it says in SSH_MSG_CHANNEL_OPEN_FAILURE
 * (RFC 4254 §5.1): besides the reason code, the description starts with a stable word,
 * `WORD: human text`. OpenSSH prints the description as is ("open failed: connect failed:
 * service_unreachable: ..."); the CLI branches on the word only, never on the text.
 */
export const CHANNEL_REFUSALS = [
  /** The lease does not allow this destination (another exposure, no such egress target, wrong lease kind, not active). */
  'not_in_lease',
  /** Nobody exposes this name on this relay now (X is not connected). */
  'exposure_offline',
  /** X is connected but exposes the name on other ports. */
  'no_such_port',
  /** X refused the channel: it could not connect to its own service. */
  'service_unreachable',
  /** X did not answer the channel open in time. */
  'open_timeout',
  /** The relay could not connect to the egress target. */
  'egress_failed',
  /** Limits of the connection, the exposure or the relay, or a draining relay: try again later. */
  'busy',
  /** Not a direct-tcpip channel: a session (shell, exec, sftp), x11, agent or streamlocal; the relay opens none. */
  'not_offered',
] as const;

export type ChannelRefusal = (typeof CHANNEL_REFUSALS)[number];

/** The word for a relay refusal reason (the snake_case codes of its logs and metrics). */
export function refusalWord(reason: string): ChannelRefusal {
  switch (reason) {
    case 'exposure_offline':
    case 'no_such_port':
    case 'open_timeout':
      return reason;
    case 'open_failed':
      return 'service_unreachable';
    case 'draining':
    case 'too_many_pending_opens':
    case 'too_many_channels':
    case 'member_channels':
    case 'opener_share':
    case 'exposure_full':
    case 'egress_no_port_block':
      return 'busy';
    case 'egress_connect_timeout':
    case 'egress_resolve_failed':
    case 'egress_connect_failed':
    case 'egress_firewall_failed':
      return 'egress_failed';
    default:
      return 'not_in_lease';
  }
}

/** The description sent to the client: the word, then the human text (bounded). */
export function formatRefusal(word: ChannelRefusal, text: string): string {
  return `${word}: ${text}`.slice(0, 256);
}

/** The refusal word of a description, when it has one this version knows. */
export function parseRefusal(description: string | undefined): { kind: ChannelRefusal; detail: string } | undefined {
  const m = /^([a-z_]{1,32}): (.*)$/s.exec(description ?? '');
  if (!m || !(CHANNEL_REFUSALS as readonly string[]).includes(m[1]!)) return undefined;
  return { kind: m[1] as ChannelRefusal, detail: m[2]! };
}
