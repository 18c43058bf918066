import { isIP } from 'node:net';

/** Where a `forwarded-tcpip` channel says its connection comes from. */
export interface Originator {
  readonly addr: string;
  readonly port: number;
}

/** What X is told when the relay has no address for Y's connection (its socket already gone). */
export const UNKNOWN_ORIGINATOR: Originator = Object.freeze({ addr: '0.0.0.0', port: 0 });

/**
 * The originator the relay names to X in a `forwarded-tcpip` open for Y's channels: Y's TCP
 * peer address and port as the relay's socket sees them (an IPv4-mapped IPv6 address as its IPv4
 * address), as OpenSSH's sshd names the client that connected to a -R listener. Never the
 * originator Y put in its `direct-tcpip` open: that is any text Y likes (tens of KB, NULs, a
 * false address, all of it in X's logs; OpenSSH as X refuses the channel for 30 KB or a NUL).
 * Anything but an IP address and a port (a socket closed before ssh2 read it) is
 * UNKNOWN_ORIGINATOR.
 */
export function originatorOf(ip: string | undefined, port: number | undefined): Originator {
  if (ip === undefined || port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) return UNKNOWN_ORIGINATOR;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const addr = mapped ? mapped[1]! : ip;
  if (isIP(addr) === 0 || addr.length > 64) return UNKNOWN_ORIGINATOR;
  return Object.freeze({ addr, port });
}
