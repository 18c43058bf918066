import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client, Connection } from 'ssh2';

/** The TCP socket under an ssh2 server connection (ssh2 keeps it as `_sock`). */
export function socketOf(conn: Connection): Socket {
  const sock = (conn as unknown as { _sock?: Socket })._sock;
  if (!sock) throw new Error('ssh2 internals changed: Connection._sock missing');
  return sock;
}

/**
 * The socket under an ssh2 channel's connection (lib/Channel.js keeps the Client or server
 * Connection as `_client`, which keeps its socket as `_sock`); undefined for any other stream.
 */
export function channelSocket(ch: Duplex): Socket | undefined {
  const sock = (ch as unknown as { _client?: { _sock?: Socket } })._client?._sock;
  return sock && typeof sock.write === 'function' && typeof sock.writableLength === 'number' ? sock : undefined;
}

/** The Client or server Connection an ssh2 channel belongs to (lib/Channel.js keeps it as `_client`); undefined for any other stream. */
export function channelConnection(ch: Duplex): Client | Connection | undefined {
  const conn = (ch as unknown as { _client?: { _protocol?: unknown } })._client;
  return conn && typeof conn === 'object' && conn._protocol ? (conn as unknown as Client | Connection) : undefined;
}

/** The TCP socket an ssh2 Client created in `connect()` (ssh2 keeps it as `_sock`). */
export function clientSocket(client: Client): Socket {
  const sock = (client as unknown as { _sock?: Socket })._sock;
  if (!sock || typeof sock.write !== 'function') throw new Error('ssh2 internals changed: Client._sock missing');
  return sock;
}

/** The software version in the server's identification line, as ssh2's client keeps it (`_remoteVer`). */
export function remoteSoftware(client: Client): string | undefined {
  const v = (client as unknown as { _remoteVer?: unknown })._remoteVer;
  return typeof v === 'string' ? v : undefined;
}
