import type { AuthContext, ClientInfo, Connection, ServerChannel, TcpipBindInfo, TcpipRequestInfo } from 'ssh2';
import type { ConnectionEvent } from '../protocol/node-api.js';
import { LEASE_RENEW_REQUEST } from '../protocol/lease-renew.js';
import { ConnectionAuth } from './auth/connection-auth.js';
import { stillTrusted, type VerifiedLease } from './auth/verify-client-cert.js';
import type { TrustSnapshot } from './trust/jwks-cache.js';
import { FaultGuard, type FaultPoint } from './fault-guard.js';
import { EgressError } from './egress/egress-lock.js';
import { BoundExposures } from './forwarding/bound-exposures.js';
import { DirectChannels } from './forwarding/direct-channels.js';
import { cutLeftBridges } from './forwarding/left-bridges-cut.js';
import type { ForwardingHost } from './forwarding/forwarding-host.js';
import type { LeaseEndReason, LeftCutReason } from './leases/lease-registry.js';
import { LeaseRenewal } from './leases/lease-renewal.js';
import { disconnectPeer, LIMIT_REFUSALS, type CloseReason } from './close-reasons.js';
import { ChannelSlots } from './channel-slots.js';
import { reportClose } from './close-report.js';
import { loggable, type Logger } from '../shared/logger.js';
import type { RelayContext } from './relay-context.js';
import { watchSendBudget } from './peer-send-budget.js';
import type { SendBudget } from './send-budget.js';
import { PathRtt } from './path-rtt.js';
import { RekeyLimit } from './rekey-limit.js';
import { PerMinuteLimit } from './per-minute-limit.js';
import { countRefusedChannelTypes } from './refused-channel-types.js';
import { CLI_SOFTWARE, isSoftware } from '../protocol/ssh-idents.js';
import { refuseRequest } from './forwarding/request-refusals.js';
import { RefusalLog } from './forwarding/refusal-log.js';
import { originatorOf } from './forwarding/originator.js';
import {
  customRequestOf,
  enforceChannelLimits,
  type ChannelLimitViolation,
  routeCustomGlobalRequests,
  socketOf,
  timePings,
} from './ssh2-internals.js';

/** Defined in node/relay-context.ts (the modules a connection delegates to take parts of it); node/relay.ts imports it from here. */
export type { RelayContext };

/**
 * One SSH connection: ssh2's events, each run through its FaultGuard, handed to its authentication
 * (node/auth/connection-auth.ts), renewals (node/leases/lease-renewal.ts), X's exposures and Y's
 * channels (node/forwarding/bound-exposures.ts, direct-channels.ts); its lease, state and close.
 */
export class RelayConnection {
  readonly sessionId: string;
  readonly remote: string;
  #ctx: RelayContext;
  #conn: Connection;
  #log: Logger;
  #lease: VerifiedLease | undefined;
  #ending = false;
  #bytesIn = 0;
  #bytesOut = 0;
  #slots: ChannelSlots;
  #closed = false;
  #guard: FaultGuard;
  #budget: SendBudget;
  #faulted = false;
  /** Its authentication, until it is authenticated (made at the peer's first attempt). */
  #auth: ConnectionAuth | undefined;
  /** The user name it authenticated with (kept from #auth, which goes at 'ready'). */
  #user = '';
  /** Made at the first renewal (most connections never renew in band before they close, and an idle X holds one per connection: issue 11's 40 KB per idle exposure). */
  #renewal: LeaseRenewal | undefined;
  readonly #exposures: BoundExposures;
  /** Y's side, made at the first direct-tcpip open (X's connections never open one). */
  #direct: DirectChannels | undefined;
  /** What the forwarding (both sides) and the refusals take from this connection: one object, shared. */
  readonly #host: ForwardingHost;
  /** The peer is Tunnel's own CLI: its channels may grow their windows (node/adaptive-window.ts). */
  readonly #adaptive: boolean;
  /** A CLI peer's round trip from pings, for its channels' windows (node/path-rtt.ts); undefined for other peers. */
  #pathRtt: PathRtt | undefined;
  #ping: (() => void) | undefined;
  /** Gives back the member's connection it took at authentication (--max-connections-per-member). */
  #releaseMember: (() => void) | undefined;
  /** Gives back what LeaseRegistry.holdLeft keeps for this closed connection's left bridges (reportClose). */
  #releaseLeft: (() => void) | undefined;
  /** Which of its refusals are logged (made at the first one; node/forwarding/refusal-log.ts). */
  #refusals: RefusalLog | undefined;
  /** Its port-forwarding requests against --max-forwards-per-minute (made at the first one). */
  #forwards: PerMinuteLimit | undefined;
  readonly closed: Promise<void>;

  constructor(ctx: RelayContext, conn: Connection, info: ClientInfo, onClosed: (c: RelayConnection) => void) {
    this.#ctx = ctx;
    this.#conn = conn;
    this.sessionId = ctx.ids.session();
    this.remote = `${info.ip}:${info.port}`;
    this.#log = ctx.logger.child({ sessionId: this.sessionId, remote: this.remote });
    this.#adaptive = isSoftware(info.header?.versions?.software, CLI_SOFTWARE);
    // Every callback below runs through the guard: a throw or a rejection there is a fault of
    // this connection (logged with its session id, counted, the connection closed), never a
    // crash of the relay (node/fault-guard.ts).
    const guard = (this.#guard = new FaultGuard({ sessionId: this.sessionId, fault: (err, where) => this.#fault(err, where) }));
    const wrap: FaultGuard['wrap'] = (where, fn) => guard.wrap(where, fn);
    this.#slots = new ChannelSlots(ctx.config.limits);

    // Registers its hooks on the socket and on 'handshake' (before the rekey limit's, below).
    this.#budget = watchSendBudget(conn, { ctx, log: this.#log, stalled: () => this.end('send_stalled', true), wrap });
    // What both sides of the forwarding (X's exposures, Y's channels) take from the connection:
    // this one object, as it is (node/forwarding/forwarding-host.ts).
    const host: ForwardingHost = (this.#host = {
      ctx,
      sessionId: this.sessionId,
      peer: originatorOf(info.ip, info.port),
      conn,
      log: this.#log,
      slots: this.#slots,
      budget: this.#budget,
      closing: () => this.#closing,
      lease: () => this.#lease,
      adaptive: this.#adaptive,
      windowOwner: () => this.#windowOwner,
      pathRtt: this.#pathMs,
      account: (bytesIn, bytesOut) => {
        this.#bytesIn += bytesIn;
        this.#bytesOut += bytesOut;
      },
      wrap,
      inject: (point) => this.#inject(point),
      refusalLog: () => (this.#refusals ??= new RefusalLog(ctx.clock)),
    });
    this.#exposures = new BoundExposures(host);
    const limits = ctx.config.limits;
    // Every key exchange costs the relay a signature and a key agreement (node/rekey-limit.ts).
    const rekeys = new RekeyLimit(limits, ctx.clock);
    conn.on(
      'handshake',
      guard.wrap('rekey-limit', () => {
        // Already closing for another reason (the first reason stands): nothing to refuse here.
        if (rekeys.exchanged() || this.#closing) return;
        ctx.metrics.refusedRequests.inc({ type: 'rekey_rate' });
        this.#log.warn('peer re-keys too often; disconnecting', { limitPerMinute: limits.rekeysPerMinute, leaseId: this.#lease?.leaseId });
        this.end('rekey_rate');
      }),
    );

    // A peer that sends past a channel's window would make the relay hold all it sends, and a
    // channel with a tiny maximum packet size would make ssh2 spin (0) or send a packet per byte.
    enforceChannelLimits(
      conn,
      guard.wrap('channel-limits', ({ kind, ...details }: ChannelLimitViolation) => {
        ctx.metrics.refusedRequests.inc({ type: LIMIT_REFUSALS[kind].type });
        this.#log.warn(LIMIT_REFUSALS[kind].msg, { ...details, leaseId: this.#lease?.leaseId });
        this.end(kind);
      }),
    );
    routeCustomGlobalRequests(conn, [LEASE_RENEW_REQUEST]);
    if (this.#adaptive) {
      const rtt = (this.#pathRtt = new PathRtt());
      this.#ping = timePings(conn, (ms) => rtt.add(ms), ctx.windows.now);
    }
    countRefusedChannelTypes(conn, host);
    const ip = info.ip; // not `info`: a closure here keeps what it names for the connection's life
    conn.on('authentication', guard.wrap('authentication', (actx: AuthContext) => this.#authentication(ip).authenticate(actx)));
    conn.on('ready', guard.wrap('ready', () => this.#onReady()));
    conn.on(
      'request',
      guard.wrap('request', (accept: unknown, reject: unknown, name: unknown, info: unknown) =>
        this.#onRequest(accept as ((port?: number) => void) | undefined, reject as (() => void) | undefined, String(name), info),
      ),
    );
    conn.on(
      'tcpip',
      guard.wrap('tcpip', (accept: () => ServerChannel, reject: () => void, info: TcpipRequestInfo) => {
        // An open that came in the same read as the request that made the relay close the
        // connection (a limit): ignorePeer stops ssh2 parsing from the next read on, not the rest
        // of this one. Not answered, and X never asked for a channel for it.
        if (this.#closing) return;
        this.#directChannels().open(accept, reject, info);
      }),
    );
    conn.on(
      'error',
      guard.wrap('error', (err: Error & { level?: string }) => {
        if (err.level === 'client-timeout') {
          // ssh2 only calls end() here, which never completes against a vanished peer (DESIGN).
          // Counted only when the timeout is what closes it (before end(): counted even when a
          // release in it throws); one already closing is cut now.
          if (!this.#closing) ctx.metrics.keepaliveTimeouts.inc();
          this.end('keepalive_timeout', true);
          return;
        }
        // A peer's DISCONNECT description reaches here as the message (any text up to a packet,
        // sent in the clear before the key exchange by anyone): logged cut short.
        this.#log.info('connection error', { err: loggable(err.message, 256), errLevel: err.level });
      }),
    );
    // The peer's FIN ends its connection at once. From then on ssh2 writes nothing to the socket
    // (its onWrite drops every packet once the readable side ended; Node swaps the socket's write
    // for writeAfterFIN, which drops the packet pool's and the batching's wrappers), so nothing
    // can reach the peer any more; but the bridges feeding it went on, and with the queue toward
    // it stuck under the send bound they encrypted and dropped the other side's data at full
    // speed, each packet in a fresh pooled buffer never given back, until a keepalive timeout
    // (test/node/relay-peer-fin). Destroyed, the socket closes and #onClose releases everything.
    conn.on('end', guard.wrap('end', () => socketOf(conn).destroy()));
    this.closed = new Promise((resolve) => {
      conn.once('close', () => {
        this.#onClose();
        try {
          onClosed(this);
        } finally {
          resolve();
        }
      });
    });
  }

  /**
   * Whose share of the window budget this connection's channels take: its member's (the lease's
   * subject), so one member cannot pin more of it by opening more connections.
   */
  get #windowOwner(): unknown {
    return this.#lease?.claims.sub ?? this;
  }

  /** Closing (end() ran) or closed: a later end() is a no-op, or only cuts the socket sooner. */
  get #closing(): boolean {
    return this.#ending || this.#closed;
  }

  /** The connection's ping round trip in ms (Infinity while unknown), for adopt's `pathRtt`. */
  readonly #pathMs = (): number => this.#pathRtt?.ms ?? Infinity;

  get lease(): VerifiedLease | undefined {
    return this.#lease;
  }

  /** Open SSH channels of this connection (Y's, or X's forwarded ones), for limits and draining. */
  get activeChannels(): number {
    return this.#slots.open;
  }

  /** Bridges this connection (Y's side) holds: each joins one of its channels to one of X's. */
  get bridges(): number {
    return this.#direct?.count ?? 0;
  }

  /** Bytes inside the streams of this connection's bridges (bounded by windows and stream high-water marks). */
  get bridgeBuffered(): number {
    return this.#direct?.buffered ?? 0;
  }

  /** Chunks waiting in the readable sides of this connection's bridges' streams. */
  get bridgeChunks(): number {
    return this.#direct?.bufferedChunks ?? 0;
  }

  /** Bytes buffered for this peer: in its socket, and held by ssh2 during a key exchange. */
  get sendBuffer(): { socket: number; keyExchange: number; over: boolean } {
    return { socket: this.#budget.socketBytes, keyExchange: this.#budget.heldBytes, over: this.#budget.over };
  }

  /** The in-band renewal, made when the peer first asks (see #renewal). */
  #renewals(): LeaseRenewal {
    return (this.#renewal ??= new LeaseRenewal({
      ctx: this.#ctx,
      sessionId: this.sessionId,
      log: this.#log,
      lease: () => this.#lease,
      username: () => this.#user,
      closed: () => this.#closed,
      setLease: (lease) => {
        this.#lease = lease;
      },
      activateEgress: (lease) => this.#activateEgress(lease),
      tooOften: () => this.end('renewal_rate'),
    }));
  }

  /** Y's side of the connection, made at its first direct-tcpip open (see #direct). */
  #directChannels(): DirectChannels {
    return (this.#direct ??= new DirectChannels(this.#host, (point) => this.#inject(point)));
  }

  /**
   * The connection's authentication, made at the peer's first attempt and dropped once it is
   * authenticated (#onReady; ssh2 takes no attempt after that): an idle connection keeps only
   * its user name (issue 11, 40 KB per idle exposure).
   */
  #authentication(ip: string): ConnectionAuth {
    return (this.#auth ??= new ConnectionAuth({
      ctx: this.#ctx,
      sessionId: this.sessionId,
      ip,
      log: this.#log,
      ending: () => this.#ending,
      closed: () => this.#closed,
      inject: (point) => this.#inject(point),
      event: (e, member) => this.#event(e, member),
      end: (reason) => this.end(reason),
      leaseEnd: (reason: LeaseEndReason) => {
        if (this.#closing) return false; // already closing for another reason, the one logged (end)
        // Begun here even when a release in end() throws (a fault, reported by the guard), as the metric counts.
        this.#guard.run('lease-end', () => this.#leaseEnded(reason));
        return true;
      },
      setLease: (lease, releaseMember) => {
        this.#lease = lease;
        this.#releaseMember = releaseMember;
      },
    }));
  }

  /**
   * Closes the connection. `now` destroys the socket at once (dead peer, shutdown deadline).
   * Once: the first reason stands (one log line, one DISCONNECT, one deadline), and a later call
   * while it closes only cuts the socket at once when it says `now`. Returns true when this call
   * began closing it.
   */
  end(reason: CloseReason, now = false): boolean {
    if (this.#closed) return false;
    if (this.#ending) {
      if (now) socketOf(this.#conn).destroy();
      return false;
    }
    this.#ending = true;
    // Closed for what it carries at once, not when the peer hangs up (up to 2 s later, see
    // disconnectPeer, or never for a peer that ignores the DISCONNECT): its channels end, its
    // exposures take no new channel, and nothing it sends from now on is parsed (ignorePeer, in
    // disconnectWithReason).
    // Each step on its own (#each): one that throws no longer leaves the ones after it to the
    // socket's close; #onClose releases all of it again then.
    this.#each(
      () => this.#log.info('closing connection', { reason, leaseId: this.#lease?.leaseId }),
      () => this.#abortBridges(),
      () => this.#exposures.unbindAll(),
      () => this.#exposures.endBridges(),
      () => this.#ctx.egress.release(this.sessionId),
    );
    disconnectPeer(this.#conn, reason, now);
    return true;
  }

  /**
   * Runs each of `steps` under the guard, whatever the others do: a throw is a fault of this
   * connection (logged, counted under `close`; end() finds it closing already), and the steps
   * after it still run.
   */
  #each(...steps: (() => void)[]): void {
    for (const step of steps) this.#guard.run('close', step);
  }

  /** The bridges left at the connection's close end now (LeaseRegistry.holdLeft: a lease revoked or expired, or the relay stops); each step guarded. */
  #cutLeft(reason: LeftCutReason): void {
    cutLeftBridges(this.#host, { direct: this.#direct, exposures: this.#exposures }, reason, (...steps) => this.#each(...steps));
  }

  /** Its bridges (Y's side) end now (at its socket's close, `keepClosed`: see DirectChannels.abortAll); the test fault `close-bridges` throws first. */
  #abortBridges(keepClosed = false): void {
    this.#inject('close-bridges');
    this.#direct?.abortAll(keepClosed);
  }

  /**
   * end() for a caller outside this connection's handlers (the relay's loops over all its
   * connections: a refused node credential, shutdown, a key withdrawn from the JWKS): a throw in
   * it is a fault of this connection (logged, counted; the socket closed all the same), so one
   * connection's bug never leaves the rest of the loop's connections open.
   */
  endSafely(reason: CloseReason, now = false): void {
    this.#guard.run('close', () => this.end(reason, now));
  }

  /**
   * Closes the connection when `trust` no longer holds the keys that vouched for its lease (a key
   * withdrawn from the JWKS). Returns true when it did.
   */
  closeIfUntrusted(trust: TrustSnapshot): boolean {
    const lease = this.#lease;
    if (!lease || this.#ending || stillTrusted(lease, trust)) return false;
    this.#ctx.metrics.leaseClosures.inc({ reason: 'lease_untrusted' });
    this.endSafely('lease_untrusted');
    return true;
  }

  /** A bug in one of this connection's handlers: log it with the session id, count it, close. */
  #fault(err: unknown, where: string): void {
    this.#ctx.metrics.handlerFaults.inc({ where });
    if (this.#faulted) return;
    this.#faulted = true;
    this.#log.error('connection handler failed; closing the connection', {
      where,
      err,
      stack: err instanceof Error ? err.stack : undefined,
      leaseId: this.#lease?.leaseId,
    });
    try {
      this.end('internal_error');
    } catch {
      socketOf(this.#conn).destroy();
    }
  }

  /** Test-only fault injection (`--test-fault`); a no-op in production. */
  #inject(point: FaultPoint): void {
    this.#ctx.injectFault?.(point, { username: this.#auth?.username ?? this.#user });
  }

  /** Reports `e` as an event of `member` (EventReporter.push): by default the lease's subject, once it holds one. */
  #event(e: Omit<ConnectionEvent, 'at' | 'session_id' | 'remote'>, member = this.#lease?.claims.sub): void {
    this.#ctx.reporter.push({ at: this.#ctx.clock.now().toISOString(), session_id: this.sessionId, remote: this.remote, ...e }, member);
  }

  #onReady(): void {
    this.#user = this.#auth?.username ?? '';
    this.#auth = undefined;
    this.#inject('ready');
    const lease = this.#lease;
    // Cannot happen (ssh2 emits 'ready' only after accept(), which follows setLease): a bug, so a
    // fault of this handler (logged, counted, closed as internal_error; #fault).
    if (!lease) throw new Error('connection ready without a lease');
    const c = lease.claims;
    this.#ctx.metrics.authSuccesses.inc({ kind: c.kind });
    this.#log.info('connection authenticated', {
      user: this.#user,
      leaseId: lease.leaseId,
      kind: c.kind,
      exposure: c.kind === 'egress' ? undefined : c.exposure,
      serial: lease.serial,
      fingerprint: lease.fingerprint,
      deadline: lease.deadline.toISOString(),
    });
    this.#event({ type: 'conn_open', lease_id: lease.leaseId });
    // The first round trip for its channels' windows, while nothing queues (node/path-rtt.ts).
    this.#ping?.();
    if (c.kind === 'egress') this.#activateEgress(lease);
  }

  /** An egress lease becomes active (its rules enter the firewall) when its connection is up. */
  #activateEgress(lease: VerifiedLease): void {
    if (lease.claims.kind !== 'egress') return;
    this.#ctx.egress
      .activate({ leaseId: lease.leaseId, targets: lease.claims.targets, expiresAt: lease.deadline }, this.sessionId)
      .catch((err: unknown) => this.#log.warn('egress lease not activated', { leaseId: lease.leaseId, reason: err instanceof EgressError ? err.reason : 'error', err }));
  }

  /** The lease registry closes the connection (see LeaseHolder.close; the caller checked it is not closing already). */
  #leaseEnded(reason: LeaseEndReason): void {
    this.#ctx.metrics.leaseClosures.inc({ reason });
    this.end(reason);
  }

  #onRequest(accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: unknown): void {
    const lease = this.#lease;
    this.#inject('request');
    const custom = customRequestOf(info);
    if (custom?.name === LEASE_RENEW_REQUEST) {
      this.#guard.run('renewal', () => this.#renewals().renew(custom, accept, reject));
      return;
    }
    // Requests the peer sent before it saw our DISCONNECT (in the chunk being parsed) are not answered.
    if (this.#closing) return;
    // Each binds or unbinds an exposure (an event the control plane records: the event queue
    // drops its oldest when full) or is refused (a log line): one member cancelling and binding
    // its exposure in a loop, without waiting for replies, made tens of thousands of events a
    // second and pushed every other member's connection events out of the queue.
    if (!(this.#forwards ??= new PerMinuteLimit(this.#ctx.config.limits.forwardsPerMinute, this.#ctx.clock)).take()) {
      this.#ctx.metrics.refusedRequests.inc({ type: 'forward_rate' });
      this.#log.warn('peer sends port-forwarding requests too often; disconnecting', { limitPerMinute: this.#ctx.config.limits.forwardsPerMinute, leaseId: lease?.leaseId });
      this.end('forward_rate');
      return;
    }
    if (!lease || (name !== 'tcpip-forward' && name !== 'cancel-tcpip-forward')) return refuseRequest(this.#host, name, 'unsupported', {}, reject);
    this.#exposures.request(name, info as TcpipBindInfo, lease, accept, reject);
  }

  /** Gives back everything the connection held, each step on its own (#each): a throw in one skipped every release after it, for good. */
  #onClose(): void {
    this.#closed = true;
    this.#each(
      () => this.#direct?.stopIdleSweep(),
      () => this.#budget.close(),
      () => this.#abortBridges(true),
      () => this.#exposures.unbindAll(),
      () => this.#exposures.endBridges(true),
      // Bridges left to deliver what a peer sent before its CLOSE still end at once when one of this
      // connection's leases is revoked, or it expires: the registry keeps what cuts them until the last closed.
      () => (this.#releaseLeft = this.#ctx.registry.holdLeft(this.sessionId, (reason) => this.#cutLeft(reason))),
      () => this.#ctx.registry.detach(this.sessionId),
      () => {
        const release = this.#releaseMember;
        this.#releaseMember = undefined;
        release?.();
      },
      () => this.#ctx.egress.release(this.sessionId),
      () =>
        reportClose({
          log: this.#log,
          leaseId: this.#lease?.leaseId,
          direct: this.#direct,
          exposures: this.#exposures,
          totals: () => ({ bytesIn: this.#bytesIn, bytesOut: this.#bytesOut }),
          guard: this.#guard,
          inject: (point) => this.#inject(point),
          releaseLeft: () => {
            const release = this.#releaseLeft;
            this.#releaseLeft = undefined;
            release?.();
          },
          closed: (t) => {
            if (this.#lease) this.#event({ type: 'conn_close', lease_id: this.#lease.leaseId, bytes_in: t.bytesIn, bytes_out: t.bytesOut });
          },
        }),
    );
  }
}
