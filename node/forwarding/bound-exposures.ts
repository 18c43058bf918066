import type { Duplex } from 'node:stream';
import type { Connection, ServerChannel, TcpipBindInfo } from 'ssh2';
import type { VerifiedLease } from '../auth/verify-client-cert.js';
import type { OpenRefusedError } from '../channel-slots.js';
import type { RelayContext } from '../relay-context.js';
import type { ForwardingHost } from './forwarding-host.js';
import type { VirtualListener } from './virtual-listeners.js';

/** What X's side of a connection takes from its connection (node/connection.ts), besides ForwardingHost. */
export interface BoundExposuresOptions extends ForwardingHost {
  ctx: Pick<RelayContext, 'listeners' | 'windows' | 'draining'>;
  sessionId: string;
  /** X's connection: `forwarded-tcpip` channels are opened on it. */
  conn: Connection;
}

/**
 * X's side of one connection: the exposures it bound with `tcpip-forward` (its virtual
 * listeners, node/forwarding/virtual-listeners.ts), unbound with `cancel-tcpip-forward` or when
 * the connection ends, and the `forwarded-tcpip` channels Y's opens ask X for.
 */
export class BoundExposures {
  readonly #o: BoundExposuresOptions;
  #bound: VirtualListener[] = [];

  constructor(o: BoundExposuresOptions) {
    this.#o = o;
  }

  /** X's `tcpip-forward` or `cancel-tcpip-forward` global request, under `lease`. */
  request(
    name: 'tcpip-forward' | 'cancel-tcpip-forward',
    bind: TcpipBindInfo,
    lease: VerifiedLease,
    accept: ((port?: number) => void) | undefined,
    reject: (() => void) | undefined,
  ): void {
    const o = this.#o;
    if (name === 'cancel-tcpip-forward') {
      const l = this.#bound.find((x) => x.bindAddr === bind.bindAddr && x.bindPort === bind.bindPort);
      if (!l) return o.refuse(name, 'not_bound', { bindAddr: bind.bindAddr, bindPort: bind.bindPort }, reject);
      this.#bound.splice(this.#bound.indexOf(l), 1);
      o.ctx.listeners.remove(l);
      o.log.info('exposure unbound', { exposure: l.exposure, port: l.port });
      accept?.();
      return;
    }
    const c = lease.claims;
    if (o.ctx.draining()) return o.refuse(name, 'draining', {}, reject);
    if (c.kind !== 'expose' || bind.bindAddr !== c.exposure || bind.bindPort !== c.port) {
      return o.refuse(name, 'not_in_lease', { bindAddr: bind.bindAddr, bindPort: bind.bindPort }, reject);
    }
    if (this.#bound.some((x) => x.bindAddr === bind.bindAddr && x.bindPort === bind.bindPort)) {
      return o.refuse(name, 'already_bound', { bindAddr: bind.bindAddr, bindPort: bind.bindPort }, reject);
    }
    const listener: VirtualListener = {
      exposure: c.exposure,
      port: c.port,
      sessionId: o.sessionId,
      leaseId: lease.leaseId,
      bindAddr: bind.bindAddr,
      bindPort: bind.bindPort,
      open: (origin, opener) => this.#openForwarded(listener, origin, opener),
      gate: o.budget,
      account: (bytesIn, bytesOut) => o.account(bytesIn, bytesOut),
    };
    this.#bound.push(listener);
    o.ctx.listeners.add(listener);
    o.log.info('exposure bound', { exposure: c.exposure, port: c.port, leaseId: lease.leaseId });
    accept?.();
  }

  /** The connection ends: its exposures take no new channel. */
  unbindAll(): void {
    this.#o.ctx.listeners.removeSession(this.#o.sessionId);
    this.#bound = [];
  }

  /**
   * X's side: ask X for a `forwarded-tcpip` channel echoing exactly what it bound, in one of this
   * connection's channel slots and its opener's (Y's user's) share of them (ChannelSlots).
   */
  #openForwarded(l: VirtualListener, origin: { addr: string; port: number }, opener: string): Promise<Duplex> {
    const o = this.#o;
    if (o.closed()) return Promise.reject(new Error('exposure connection closed'));
    let release: () => void;
    try {
      release = o.slots.reserve(opener);
    } catch (err) {
      return Promise.reject(err as OpenRefusedError);
    }
    return new Promise((resolve, reject) => {
      o.conn.forwardOut(
        l.bindAddr,
        l.bindPort,
        origin.addr,
        origin.port,
        o.wrap('forward-open', (err: Error | undefined, ch: ServerChannel) => {
          if (err) {
            release();
            return reject(err);
          }
          o.slots.opened();
          if (o.adaptive) o.ctx.windows.adopt(ch, { owner: o.windowOwner(), pathRtt: o.pathRtt });
          ch.once(
            'close',
            o.wrap('channel-close', () => {
              o.slots.closed();
              release();
            }),
          );
          resolve(ch);
        }),
      );
    });
  }
}
