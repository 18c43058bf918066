import { createRequire } from 'node:module';
import type { Client, Connection } from 'ssh2';

/** Requires ssh2's own files (lib/...) rather than its entry point (see modules.ts). */
export const requireSsh2 = createRequire(import.meta.url);

export type GlobalRequestHandler = (p: unknown, name: string, wantReply: boolean, data: unknown) => void;
export type ChannelOpenHandler = (p: unknown, info: { type: string; sender: number; packetSize?: number }) => void;
export type ChannelOpenConfirmationHandler = (p: unknown, info: { recipient: number; packetSize?: number }) => void;
export type ChannelRequestHandler = (p: unknown, recipient: number, type: string, wantReply: boolean, data: unknown) => void;
export type ChannelDataHandler = (p: unknown, recipient: number, data: Buffer, ...rest: unknown[]) => void;
export type WindowAdjustHandler = (p: unknown, recipient: number, amount: number) => void;
export type ChannelCloseHandler = (p: unknown, recipient: number) => void;
/** ssh2's packet writer (`Protocol._packetRW.write`): `alloc(len, true)` and `finalize(packet, true)` make a KEX-safe packet. */
export interface PacketWriterInternals {
  allocStart: number;
  allocStartKEX: number;
  alloc(size: number, force?: boolean): Buffer;
  finalize(packet: Buffer, force?: boolean): Buffer;
}
export interface ProtocolInternals {
  _handlers: {
    GLOBAL_REQUEST?: GlobalRequestHandler;
    CHANNEL_OPEN?: ChannelOpenHandler;
    CHANNEL_OPEN_CONFIRMATION?: ChannelOpenConfirmationHandler;
    CHANNEL_REQUEST?: ChannelRequestHandler;
    CHANNEL_DATA?: ChannelDataHandler;
    CHANNEL_EXTENDED_DATA?: ChannelDataHandler;
    CHANNEL_WINDOW_ADJUST?: WindowAdjustHandler;
    CHANNEL_CLOSE?: ChannelCloseHandler;
  };
  _onHandshakeComplete?: (...args: unknown[]) => void;
  _kex?: { remoteExtInfoEnabled?: boolean };
  _packetRW?: { write: PacketWriterInternals };
  /** Outbound packets held back during a key exchange (utils.js sendPacket); undefined otherwise. */
  _queue?: Uint8Array[];
}

/** A connection's Protocol (ssh2 keeps it as `_protocol`; a Client creates it in `connect()`). */
export function protocolOf(conn: Connection | Client): ProtocolInternals {
  const proto = (conn as unknown as { _protocol?: ProtocolInternals })._protocol;
  if (!proto?._handlers) throw new Error('ssh2 internals changed: Connection._protocol._handlers missing');
  return proto;
}

/** A connection's channels by this side's id (ssh2 keeps them as `_chanMgr`). */
export function channelsOf(conn: Connection | Client): { get(id: number): unknown } {
  const chanMgr = (conn as unknown as { _chanMgr?: { get(id: number): unknown } })._chanMgr;
  if (typeof chanMgr?.get !== 'function') throw new Error('ssh2 internals changed: Connection._chanMgr missing');
  return chanMgr;
}

/**
 * ssh2's own packet sender (lib/protocol/utils.js `sendPacket`): encrypts, or queues while a
 * re-key is in progress unless `bypass`. Undefined if the internals changed.
 */
export function ssh2SendPacket(): ((proto: unknown, packet: Buffer, bypass?: boolean) => void) | undefined {
  try {
    const { sendPacket } = requireSsh2('ssh2/lib/protocol/utils.js') as { sendPacket?: unknown };
    return typeof sendPacket === 'function' ? (sendPacket as (proto: unknown, packet: Buffer, bypass?: boolean) => void) : undefined;
  } catch {
    return undefined;
  }
}
