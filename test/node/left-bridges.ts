/**
 * The setup the relay's left-bridge tests share: a peer that sends data, EOF and CLOSE on a
 * channel the other side granted no window for, so that what it sent waits in the relay (and is
 * left there once it hangs up).
 */
import { createServer, type Socket } from 'node:net';
import type { Client, ClientChannel } from 'ssh2';
import { dialTcp, type Dialer } from '../../node/egress/dial.js';
import { openDirect } from './hostile-clients.js';

export interface PeerProtocol {
  directTcpip(chan: number, initWindow: number, maxPacket: number, cfg: unknown): void;
  channelOpenConfirm(remote: number, local: number, initWindow: number, maxPacket: number): void;
  channelWindowAdjust(id: number, amount: number): void;
}
export const protocolOf = (c: Client) => (c as unknown as { _protocol: PeerProtocol })._protocol;

/**
 * A global request `c` sends and the relay refuses: once its answer is back, the relay has read
 * and handled everything `c` sent before it (one connection's packets are handled in order).
 */
export function roundTrip(c: Client): Promise<void> {
  return new Promise((resolve) => c.forwardIn('not-in-lease', 22, () => resolve()));
}

/**
 * X: binds `exposure`, confirms every channel with a window of 0 and writes `data` on it (when
 * given); `accepted` gets each. Its channels are read (so that they can end and close) but the
 * relay may send nothing on them, and ssh2, which believes it offered its 2 MiB, grants nothing more.
 */
export async function exposeStalled(x: Client, exposure: string, accepted: (ch: ClientChannel) => void, data?: Buffer): Promise<void> {
  const proto = protocolOf(x);
  const confirm = proto.channelOpenConfirm.bind(proto);
  proto.channelOpenConfirm = (remote, local, _window, maxPacket) => confirm(remote, local, 0, maxPacket);
  x.on('tcp connection', (_info, accept) => {
    const ch = accept();
    ch.on('error', () => {});
    ch.resume();
    if (data) ch.write(data);
    accepted(ch);
  });
  await new Promise<void>((resolve, reject) => x.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
}

/** Y opens a channel to `host`:`port`, sends `data`, EOF and CLOSE on it, and returns once the relay has read all of it. */
export async function sendAndClose(y: Client, host: string, port: number, data: Buffer): Promise<ClientChannel> {
  const ych = await openDirect(y, host, port);
  ych.on('error', () => {});
  ych.resume();
  ych.end(data);
  ych.close();
  await roundTrip(y);
  return ych;
}

/**
 * The relay's real egress dial, writing `prefill` to the target first: more than loopback's
 * socket buffers take, so what the relay writes after it queues in the relay until the target reads.
 */
export function prefilledDial(prefill: Buffer): Dialer {
  return async (o) => {
    const sock = await dialTcp(o);
    sock.write(prefill);
    return sock;
  };
}

/** An egress target on loopback that reads nothing (each connection paused); `onSocket` sees each first. */
export async function pausedTarget(onSocket: (s: Socket) => void = () => {}): Promise<{ port: number; taken: Socket[]; close(): void }> {
  const taken: Socket[] = [];
  const server = createServer((s) => {
    taken.push(s);
    s.on('error', () => {});
    onSocket(s);
    s.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    taken,
    close() {
      for (const s of taken) s.destroy();
      server.close();
    },
  };
}
