/**
 * `host:port` as every part of Tunnel writes it: a DNS name, an IPv4 address or a bracketed IPv6
 * address, a colon, a decimal port. Relay addresses on the wire (enrollment, leases, node lists)
 * and the listen/advertise flags of the binaries are all parsed here.
 */
const HOST = String.raw`\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+`;
export const HOST_PORT_RE = new RegExp(`^(${HOST}):(\\d{1,5})$`);
/** The host may be left out (`:2222`, or `2222` with `portOnly`). */
const LOOSE = new RegExp(`^(?:(${HOST})?:)?(\\d{1,5})$`);

export interface HostPort {
  /** Without brackets, for net.connect and friends. */
  host: string;
  port: number;
}

export interface HostPortOptions {
  /** The host when none is given (`:2222`, or `2222`); without it a host is required. */
  defaultHost?: string;
  /** Whether port 0 (any free port, for listening) is allowed. */
  allowZero?: boolean;
}

/** Parses `host:port` (see HostPortOptions for leaving the host out); undefined when it is not one. */
export function parseHostPort(s: string, o: HostPortOptions = {}): HostPort | undefined {
  const m = (o.defaultHost === undefined ? HOST_PORT_RE : LOOSE).exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535 || (port === 0 && !o.allowZero)) return undefined;
  const host = m[1] === undefined ? o.defaultHost! : m[1].replace(/^\[|\]$/g, '');
  return { host, port };
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatHostPort(hp: HostPort): string {
  return `${hp.host.includes(':') ? `[${hp.host}]` : hp.host}:${hp.port}`;
}
