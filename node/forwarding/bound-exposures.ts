import type { Duplex } from 'node:stream';
import type { ServerChannel, TcpipBindInfo } from 'ssh2';
import type { VerifiedLease } from '../auth/verify-client-cert.js';
import { holdAllowance } from '../channel-memory.js';
import type { OpenRefusedError } from '../channel-slots.js';
import type { SendGate } from '../send-budget.js';
import { forwardOutWithWindow, setIncomingWindow } from '../ssh2-internals.js';
import type { ForwardingHost } from './forwarding-host.js';
import { refuseRequest } from './request-refusals.js';
import { governWindow } from './standard-window.js';
import type { HeldBridge, VirtualListener } from './virtual-listeners.js';
import { noteLeftBridgesCut } from './left-bridges-cut.js';

/**
 * X's side of one connection: the exposures it bound with `tcpip-forward` (its virtual
 * listeners, node/forwarding/virtual-listeners.ts), unbound with `cancel-tcpip-forward` or when
 * the connection ends, and the `forwarded-tcpip` channels Y's opens ask X for.
 */
export class BoundExposures {
  /** The connection (node/connection.ts), as it is: see ForwardingHost. */
  readonly #o: ForwardingHost;
  #bound: BoundListener[] = [];
  /** The bridges into this connection's forwarded channels (Y's connections own them); undefined once it ended. */
  #bridges: Set<HeldBridge> | undefined = new Set();
  /** Ends the bridges endBridges left at the connection's close, once their time is up (cleared when the last has closed). */
  #cut: NodeJS.Timeout | undefined;
  /** The bridges endBridges left, until the last has closed; and who waits for that (whenLeftClosed). */
  #left: Set<HeldBridge> | undefined;
  #leftClosed: (() => void) | undefined;

  constructor(host: ForwardingHost) {
    this.#o = host;
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
      if (!l) return refuseRequest(o, name, 'not_bound', { bindAddr: bind.bindAddr, bindPort: bind.bindPort }, reject);
      this.#bound.splice(this.#bound.indexOf(l), 1);
      o.ctx.listeners.remove(l);
      o.log.info('exposure unbound', { exposure: l.exposure, port: l.port });
      accept?.();
      return;
    }
    const c = lease.claims;
    if (o.ctx.draining()) return refuseRequest(o, name, 'draining', {}, reject);
    if (c.kind !== 'expose' || bind.bindAddr !== c.exposure || bind.bindPort !== c.port) {
      return refuseRequest(o, name, 'not_in_lease', { bindAddr: bind.bindAddr, bindPort: bind.bindPort }, reject);
    }
    if (this.#bound.some((x) => x.bindAddr === bind.bindAddr && x.bindPort === bind.bindPort)) {
      return refuseRequest(o, name, 'already_bound', { bindAddr: bind.bindAddr, bindPort: bind.bindPort }, reject);
    }
    const listener = new BoundListener(o, c.exposure, c.port, lease, bind, this);
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

  /** See VirtualListener.hold. */
  hold(bridge: HeldBridge): () => void {
    const held = this.#bridges;
    if (!held) {
      bridge.abort();
      return () => {};
    }
    held.add(bridge);
    return () => {
      held.delete(bridge);
      if (held.size > 0 || held !== this.#left) return;
      clearTimeout(this.#cut);
      this.#left = undefined;
      const done = this.#leftClosed;
      this.#leftClosed = undefined;
      done?.();
    };
  }

  /**
   * After the connection's close (endBridges): calls `done` once the bridges left then have
   * closed, each having counted its bytes to this connection (the bridge's close credits them,
   * then releases it; at once when none is left); returns how many are left.
   */
  whenLeftClosed(done: () => void): number {
    const left = this.#left?.size ?? 0;
    if (left === 0) done();
    else this.#leftClosed = done;
    return left;
  }

  /** How many bridges endBridges left at the connection's close are still open. */
  get leftCount(): number {
    return this.#left?.size ?? 0;
  }

  /** The bridges left at the connection's close end now (a lease revoked or expired, or the relay stops: LeaseRegistry.holdLeft). */
  cutLeft(): void {
    for (const b of this.#left ?? []) this.#o.wrap('close', () => b.abort())();
  }

  /**
   * The connection ends (the relay ends it, or its socket closed): the bridges into its channels
   * end now, each on its own (one that throws is a fault, and the rest still end). Left to ssh2,
   * they ended only once the socket had closed (up to 2 s after the relay's DISCONNECT), and a
   * channel whose data waited unread (Y's window used up) never emitted 'close' then, so its
   * bridge, and Y's channel and places, stayed until Y closed it. At its socket's close
   * (`keepClosed`), not those whose channel X closed already: what X sent before its CLOSE still
   * reaches Y (unless data for X waits too); the relay ending the connection still ends them all.
   * Those left have --send-stall-timeout from then on to deliver it, then close (as Y's: see
   * DirectChannels.abortAll).
   */
  endBridges(keepClosed = false): void {
    const held = this.#bridges;
    this.#bridges = undefined;
    if (!held) return;
    for (const b of held) if (!(keepClosed && b.closedByX())) this.#o.wrap('close', () => b.abort())();
    if (held.size === 0) return;
    this.#left = held;
    // Each one's close releases it from `held` (hold): those still there are cut.
    const stalled = () => {
      noteLeftBridgesCut(this.#o, 'send_stalled', this.leftCount);
      this.cutLeft();
    };
    this.#cut = setTimeout(this.#o.wrap('close', stalled), this.#o.ctx.config.limits.sendStallMs);
    this.#cut.unref();
  }
}

/**
 * One exposure X bound. A class, so that `open` and `account` are methods, not two closures
 * (and their context) per exposure: every idle X holds one (issue 11, 40 KB per idle exposure).
 */
class BoundListener implements VirtualListener {
  readonly #host: ForwardingHost;
  readonly exposure: string;
  readonly port: number;
  readonly sessionId: string;
  readonly leaseId: string;
  readonly member: string;
  readonly bindAddr: string;
  readonly bindPort: number;
  readonly gate: SendGate;
  readonly #exposures: BoundExposures;

  constructor(host: ForwardingHost, exposure: string, port: number, lease: VerifiedLease, bind: TcpipBindInfo, exposures: BoundExposures) {
    this.#host = host;
    this.#exposures = exposures;
    this.exposure = exposure;
    this.port = port;
    this.sessionId = host.sessionId;
    this.leaseId = lease.leaseId;
    this.member = lease.claims.sub;
    this.bindAddr = bind.bindAddr;
    this.bindPort = bind.bindPort;
    this.gate = host.budget;
  }

  open(origin: { addr: string; port: number }, opener: string, abandoned?: AbortSignal): Promise<Duplex> {
    return openForwarded(this.#host, this, origin, opener, abandoned);
  }

  hold(bridge: HeldBridge): () => void {
    return this.#exposures.hold(bridge);
  }

  account(bytesIn: number, bytesOut: number): void {
    this.#host.account(bytesIn, bytesOut);
  }
}

/**
 * X's side: ask X for a `forwarded-tcpip` channel echoing exactly what it bound, in one of this
 * connection's channel slots and its opener's (Y's user's) share of them (ChannelSlots).
 */
function openForwarded(o: ForwardingHost, l: VirtualListener, origin: { addr: string; port: number }, opener: string, abandoned?: AbortSignal): Promise<Duplex> {
  if (o.closing()) return Promise.reject(new Error('exposure connection closing'));
  let release: () => void;
  try {
    release = o.slots.reserve(opener);
  } catch (err) {
    return Promise.reject(err as OpenRefusedError);
  }
  // What X may send on it before the relay reads any: its window, as the opener's channel memory
  // allows now (node/channel-memory.ts; the opener holds the bridge open); given back at its close.
  const allowance = o.ctx.channelMemory.open(opener);
  const window = allowance.size();
  // An open given up before X answers goes back at once: X's channel, if it ever comes, is closed
  // unread (direct-channels' closeLate). Kept until X answered, an X that never answers held it
  // for as long as it stayed connected, charged to an opener whose open had long failed.
  abandoned?.addEventListener('abort', () => allowance.release(), { once: true });
  return new Promise((resolve, reject) => {
    // A throw below (ssh2 internals, a window's adoption) gives the slot back and fails the open
    // at once (then it is a fault of X's connection); kept, it was held for as long as X stayed.
    const failed = (err: unknown) => {
      allowance.release();
      release();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    try {
      const opened = o.wrap('forward-open', (err: Error | undefined, ch: ServerChannel) => {
        if (err) return failed(err);
        o.slots.opened();
        try {
          holdAllowance(ch, allowance);
          setIncomingWindow(ch, window); // what X was offered
          governWindow(o, ch, allowance, false);
          o.inject('forward-open');
          ch.once(
            'close',
            o.wrap('channel-close', () => {
              o.slots.closed();
              release();
            }),
          );
        } catch (e) {
          o.slots.closed();
          ch.close();
          failed(e);
          throw e;
        }
        resolve(ch);
      });
      forwardOutWithWindow(o.conn, window, () => o.conn.forwardOut(l.bindAddr, l.bindPort, origin.addr, origin.port, opened));
    } catch (err) {
      failed(err);
    }
  });
}
