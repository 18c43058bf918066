import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ServerChannel, TcpipRequestInfo } from 'ssh2';
import type { VerifiedLease } from '../auth/verify-client-cert.js';
import { holdAllowance, type ChannelAllowance } from '../channel-memory.js';
import { OpenRefusedError } from '../channel-slots.js';
import { EgressError } from '../egress/egress-lock.js';
import type { FaultPoint } from '../fault-guard.js';
import type { SendGate } from '../send-budget.js';
import { acceptWithWindow } from '../ssh2-internals.js';
import { bridge, channelEnd, closeChannel, socketEnd, type Bridge, type BridgeEnd, type BridgeStats, type SshChannelLike } from './bridge.js';
import { OpenTimeoutError, openWithTimeout, routeDirectTcpip } from './direct-tcpip.js';
import type { ForwardingHost } from './forwarding-host.js';
import { IdleChannels } from './idle-channels.js';
import { refuseRequest } from './request-refusals.js';
import { governWindow } from './standard-window.js';
import type { HeldBridge } from './virtual-listeners.js';
import { noteLeftBridgesCut } from './left-bridges-cut.js';
import { relayParkedChunks } from '../parked-chunks.js';

/**
 * Y's side of one connection: its `direct-tcpip` channel opens, each routed by its lease to an
 * exposure's X (node/forwarding/bound-exposures.ts) or to an egress target, confirmed only once
 * the other side is open, and bridged to it.
 */
export class DirectChannels {
  /** The connection (node/connection.ts), as it is: see ForwardingHost. */
  readonly #o: ForwardingHost;
  /** Test-only fault injection (`--test-fault`). */
  readonly #inject: (point: FaultPoint) => void;
  readonly #bridges = new Set<Bridge>();
  /** The --channel-idle-timeout sweep of these bridges (here, not per connection: X's never bridge). */
  readonly #idle: IdleChannels;
  /** Ends the bridges abortAll left at the connection's close, once their time is up (cleared when the last has closed). */
  #left: NodeJS.Timeout | undefined;
  /** Called once the last of those has closed (whenLeftClosed). */
  #leftClosed: (() => void) | undefined;

  constructor(host: ForwardingHost, inject: (point: FaultPoint) => void) {
    this.#o = host;
    this.#inject = inject;
    this.#idle = new IdleChannels({ idleMs: host.ctx.config.limits.channelIdleMs, clock: host.ctx.clock, log: host.log, wrap: host.wrap });
  }

  /** Bridges this connection (Y's side) holds: each joins one of its channels to one of X's. */
  get count(): number {
    return this.#bridges.size;
  }

  /** Bytes inside the streams of these bridges (bounded by windows and stream high-water marks). */
  get buffered(): number {
    let n = 0;
    for (const b of this.#bridges) n += b.buffered();
    return n;
  }

  /** Chunks waiting in the readable sides of these bridges' streams. */
  get bufferedChunks(): number {
    let n = 0;
    for (const b of this.#bridges) n += b.bufferedChunks();
    return n;
  }

  /** The connection closed: the idle sweep stops (once the bridges abortAll leaves have closed too: unwatch stops it then). */
  stopIdleSweep(): void {
    for (const b of this.#bridges) if (b.peerClosed('a')) return;
    this.#idle.close();
  }

  /**
   * The connection ends: every bridge closes now (each on its own: one that throws is a fault, and
   * the rest still close). At its socket's close (`keepClosed`), not those whose channel Y closed
   * already: what Y sent before its CLOSE still reaches the other side (unless data for Y waits
   * too), as a TCP peer's data does after it wrote, closed and went; a Y that hung up right after
   * lost what the relay still held. The relay ending the connection (a revocation, a limit) still
   * ends them all.
   *
   * Those left have --send-stall-timeout from then on to deliver it (at most Y's window: nothing
   * more comes), then close. Unbounded, an X that never granted window held each, and the
   * member's channel and X's slot with it, until the idle timeout or X's connection ended.
   */
  abortAll(keepClosed = false): void {
    for (const b of this.#bridges) if (!(keepClosed && b.peerClosed('a'))) this.#o.wrap('close', () => b.abort())();
    if (keepClosed) this.#cutLeft();
  }

  /** The bound on the bridges left at the connection's close (abortAll), from now (once). */
  #cutLeft(): void {
    if (this.#bridges.size === 0 || this.#left) return;
    const stalled = () => {
      noteLeftBridgesCut(this.#o, 'send_stalled', this.#bridges.size);
      this.abortAll();
    };
    this.#left = setTimeout(this.#o.wrap('close', stalled), this.#o.ctx.config.limits.sendStallMs);
    this.#left.unref();
  }

  /**
   * After the connection's close (abortAll): calls `done` once the bridges left then have closed,
   * each having counted its bytes to the connection (at once when none is left); returns how many
   * are left.
   */
  whenLeftClosed(done: () => void): number {
    const left = this.#bridges.size;
    if (left === 0) {
      done();
      return 0;
    }
    this.#leftClosed = done;
    // Bounded even when abortAll did not run (a close step that threw before it).
    this.#cutLeft();
    return left;
  }

  /** This connection's last bridge closed: the bound on those left at its close stops, and who waits is told. */
  #lastClosed(): void {
    clearTimeout(this.#left);
    const done = this.#leftClosed;
    this.#leftClosed = undefined;
    done?.();
  }

  /** Y's `direct-tcpip` channel open (ssh2's 'tcpip' event): to an exposure's X, or an egress target. */
  open(accept: () => ServerChannel, reject: () => void, info: TcpipRequestInfo): void {
    const o = this.#o;
    const lease = o.lease();
    this.#inject('tcpip');
    const dest = { destIP: info.destIP, destPort: info.destPort };
    if (!lease) return refuseRequest(o, 'direct-tcpip', 'unauthenticated', dest, reject);
    const route = routeDirectTcpip(lease.claims, { host: info.destIP, port: info.destPort });
    if (route.kind === 'refuse') return refuseRequest(o, 'direct-tcpip', route.reason, dest, reject);
    if (o.ctx.draining()) return refuseRequest(o, 'direct-tcpip', 'draining', dest, reject);
    const full = o.slots.refuseOpen();
    if (full) return refuseRequest(o, 'direct-tcpip', full.reason, { ...dest, limit: full.limit }, reject);
    let release: (() => void) | undefined;
    if (route.kind === 'egress') {
      if (!(release = o.ctx.memberChannels.take(lease.claims.sub))) return refuseRequest(o, 'direct-tcpip', 'member_channels', { ...dest, limit: o.ctx.memberChannels.limit }, reject);
      return this.#openEgress(accept, reject, lease, route.target, dest, release);
    }
    const target = o.ctx.listeners.find(route.exposure, route.port);
    if (!target) {
      const ports = o.ctx.listeners.portsOf(route.exposure);
      // "Wrong port" and "offline" are different mistakes for the person at Y.
      return ports.length
        ? refuseRequest(o, 'direct-tcpip', 'no_such_port', { ...dest, ports: ports.join(', ') }, reject)
        : refuseRequest(o, 'direct-tcpip', 'exposure_offline', dest, reject);
    }
    // X is told the connection comes from Y's own address and port (o.peer), never the
    // originator Y wrote in its open (info.srcIP, info.srcPort: any text, up to a packet).
    // One of the member's channels (all its connections together) from now until it closes or fails.
    if (!(release = o.ctx.memberChannels.take(lease.claims.sub))) return refuseRequest(o, 'direct-tcpip', 'member_channels', { ...dest, limit: o.ctx.memberChannels.limit }, reject);
    const member = release;

    o.slots.beginOpen();
    const closeLate = (ch: Duplex) => closeChannel(ch as SshChannelLike);
    openWithTimeout((abandoned) => target.open(o.peer, lease.claims.sub, abandoned), o.ctx.config.openTimeoutMs, closeLate).then(
      o.wrap('tcpip-open', (xch: Duplex) => {
        // Y's channel is confirmed only now, so a failure on X's side reached Y as an open failure.
        const channelId = this.#confirm(accept, channelEnd(xch as SshChannelLike, target.gate), {
          to: 'exposure',
          gate: target.gate,
          member,
          memberId: lease.claims.sub,
          closed: (stats) => target.account?.(stats.bToA, stats.aToB),
          held: (b) => target.hold?.(b),
        });
        if (channelId) o.log.info('channel bridged', { channelId, exposure: route.exposure, port: route.port, to: target.sessionId });
      }),
      o.wrap('tcpip-open', (err: unknown) => {
        o.slots.endOpen();
        member();
        const reason = err instanceof OpenTimeoutError ? 'open_timeout' : err instanceof OpenRefusedError ? err.reason : 'open_failed';
        o.ctx.metrics.channels.inc({ outcome: reason });
        refuseRequest(o, 'direct-tcpip', reason, { ...dest, limit: err instanceof OpenRefusedError ? err.limit : undefined }, reject);
      }),
    );
  }

  /** Y's channel to an egress target: dial first, confirm Y's channel only once connected. */
  #openEgress(accept: () => ServerChannel, reject: () => void, lease: VerifiedLease, target: { host: string; port: number }, dest: Record<string, unknown>, member: () => void): void {
    const o = this.#o;
    o.slots.beginOpen();
    o.ctx.egress.dial(lease.leaseId, target).then(
      o.wrap('egress-open', (sock: Socket) => {
        o.ctx.metrics.egressDials.inc({ outcome: 'connected' });
        const channelId = this.#confirm(accept, socketEnd(sock), { to: 'egress', member, memberId: lease.claims.sub });
        if (channelId) o.log.info('egress channel bridged', { channelId, leaseId: lease.leaseId, host: target.host, port: target.port });
      }),
      o.wrap('egress-open', (err: unknown) => {
        o.slots.endOpen();
        member();
        const reason = err instanceof EgressError ? err.reason : 'egress_connect_failed';
        o.ctx.metrics.egressDials.inc({ outcome: reason });
        refuseRequest(o, 'direct-tcpip', reason, { ...dest, leaseId: lease.leaseId, err: err instanceof Error ? err.message : String(err) }, reject);
      }),
    );
  }

  /**
   * The other side of Y's open is here (`other`: X's channel, or an egress socket): confirms Y's
   * channel and bridges the two; returns the channel id, or undefined when Y's connection closed
   * meanwhile (#abandoned). Until the bridge holds them, a throw on the way (ssh2's accept, or
   * setting up the bridge: ssh2 internals, a window's adoption) is cleaned up here: the member's
   * channel is given back (once), both sides closed; then rethrown, a fault of the connection.
   * Given back only by the bridge's close, it was kept for ever by a member whose bridge failed.
   */
  #confirm(accept: () => ServerChannel, other: BridgeEnd, opts: BridgeOptions): string | undefined {
    const o = this.#o;
    o.slots.endOpen();
    let ych: ServerChannel | undefined;
    // What Y may send on it before the relay reads any: its window, as the member's channel
    // memory allows now (node/channel-memory.ts); given back when the channel closes.
    const allowance = o.ctx.channelMemory.open(opts.memberId);
    try {
      // Nothing when the open was answered already.
      ych = o.closing() ? undefined : acceptWithWindow(o.conn, accept, allowance.size());
    } catch (err) {
      allowance.release();
      opts.member();
      other.close();
      throw err;
    }
    if (!ych) {
      allowance.release();
      return this.#abandoned(other, opts.member);
    }
    holdAllowance(ych, allowance);
    // From here #bridgeY gives everything back on a throw, once.
    return this.#bridgeY(ych, other, opts, allowance);
  }

  /**
   * Y's connection closed, or began closing, while the other side of its open was on the way:
   * there is no channel to confirm (the relay has said DISCONNECT and ended the socket, or it is
   * gone), so what came is closed, the member's channel is given back, and the open is counted as
   * abandoned.
   */
  #abandoned(other: BridgeEnd, member: () => void): undefined {
    member();
    this.#o.ctx.metrics.channels.inc({ outcome: 'abandoned' });
    other.close();
    return undefined;
  }

  /**
   * Joins Y's just-confirmed channel to `other` (X's channel, or an egress socket): it takes a
   * channel slot, its data counts as live bytes and its silence towards --channel-idle-timeout
   * while open, and its bytes are counted (`to` names the direction) when it closes. Returns
   * its channel id.
   */
  #bridgeY(ych: ServerChannel, other: BridgeEnd, opts: BridgeOptions, allowance: ChannelAllowance): string {
    const o = this.#o;
    o.slots.opened();
    // This connection's channel count goes back once ssh2 has let go of the channel: at Y's
    // CLOSE (ssh2 has answered it, and dropped the channel's id), at its 'close', or below when
    // setting the bridge up throws. Given back at the bridge's close, a Y that never answers kept
    // any number of closed channels in ssh2 (each an object with its listeners) past
    // --max-channels-per-connection; given back only at 'close' (a few ticks after the CLOSE,
    // once what Y sent has been read), an open that came in the same read as Y's CLOSE of a
    // channel at the limit was refused.
    let slot = true;
    const slotBack = () => {
      if (!slot) return;
      slot = false;
      o.slots.closed();
    };
    ych.once('close', slotBack);
    let b: Bridge | undefined;
    try {
      governWindow(o, ych, allowance, true);
      this.#inject('bridge-open');
      const channelId = o.ctx.ids.channel();
      o.ctx.metrics.channels.inc({ outcome: 'opened' });
      let untrack = () => {};
      let unheld = () => {};
      // Y's end is `a`, X's (or the egress target's) `b`: a bridge whose peer closed its channel
      // (its CLOSE, after its data and EOF) ends as any closed channel's does, and that peer's
      // socket closing (it hangs up next) does not abort it (abortAll, HeldBridge.closedByX),
      // which dropped what the peer sent.
      const bridged = (b = bridge(
        channelEnd(ych as unknown as SshChannelLike, o.budget, slotBack),
        other,
        (stats: BridgeStats) => {
          // Each step on its own (a throw is a fault of this connection, and the steps after it
          // still run): a throw in one kept the member's channel (refusing its later opens at
          // --max-channels-per-member), the bridge in the live bytes, or in the set of open
          // bridges, whose close the connection's conn_close waits for, for good.
          const step = (fn: () => void) => o.wrap('bridge-close', fn)();
          step(() => this.#inject('bridge-close'));
          step(() => opts.member()); // the member's channel (all its connections; idempotent)
          step(() => untrack());
          let idled = false;
          step(() => (idled = this.#idle.unwatch(bridged)));
          step(() => {
            o.account(stats.aToB, stats.bToA);
            o.ctx.metrics.bytes.inc({ direction: `to_${opts.to}` }, stats.aToB);
            o.ctx.metrics.bytes.inc({ direction: `from_${opts.to}` }, stats.bToA);
            o.ctx.metrics.channels.inc({ outcome: idled ? 'idle_timeout' : stats.end });
          });
          step(() => opts.closed?.(stats));
          // After its bytes are counted on both connections (X's counts them in `closed`): a
          // closed connection reports its totals once its last bridge has closed.
          this.#bridges.delete(bridged);
          step(() => unheld());
          if (this.#bridges.size === 0) step(() => this.#lastClosed());
        },
        { parked: relayParkedChunks },
      ));
      this.#bridges.add(bridged);
      untrack = o.ctx.live.add(bridged, opts.gate ? [o.budget, opts.gate] : [o.budget]);
      this.#idle.watch(bridged);
      // Last: X's connection aborts it here if it has ended meanwhile.
      unheld = opts.held?.({ abort: () => bridged.abort(), closedByX: () => bridged.peerClosed('b') }) ?? unheld;
      return channelId;
    } catch (err) {
      // A bridge tears both sides down and gives back in its close; without one, both go here.
      if (b) b.abort();
      else {
        closeChannel(ych as unknown as SshChannelLike);
        other.close();
      }
      opts.member();
      slotBack();
      throw err;
    }
  }
}

/** How #bridgeY joins Y's channel to the other side. */
interface BridgeOptions {
  /** Which counters its bytes go to. */
  to: 'exposure' | 'egress';
  /** X's send bound, when the other side is X's channel. */
  gate?: SendGate;
  /** Gives back the member's channel (idempotent). */
  member: () => void;
  /** The member (the lease's subject): whose channel memory Y's channel takes. */
  memberId: string;
  closed?: (stats: BridgeStats) => void;
  /** Keeps the bridge with X's connection, which aborts it as it ends (VirtualListener.hold); returns its release. */
  held?: (b: HeldBridge) => (() => void) | undefined;
}
