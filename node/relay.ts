import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { AuthRateLimiter } from './auth/rate-limit.js';
import { createAuthenticator } from './auth/authenticate.js';
import type { Config } from './config.js';
import { RelayConnection, type RelayContext } from './connection.js';
import type { ControlClient } from './control-client.js';
import { HeartbeatLoop } from './heartbeat-loop.js';
import type { Ids } from './deps.js';
import type { Clock } from '../shared/clock.js';
import { currentFaultOwner, type FaultInjector } from './fault-guard.js';
import { resolveBaseRules } from './egress/base-rules.js';
import { EgressLock } from './egress/egress-lock.js';
import type { Dialer } from './egress/dial.js';
import type { Firewall } from './egress/firewall.js';
import type { BaseRules } from './egress/rules.js';
import { EventReporter } from './events/reporter.js';
import { VirtualListeners } from './forwarding/virtual-listeners.js';
import { createHealthServer } from '../shared/health-server.js';
import { LeaseRegistry } from './leases/lease-registry.js';
import { RevocationFeed } from './leases/revocation-feed.js';
import type { Logger } from '../shared/logger.js';
import { WindowBudget } from './adaptive-window.js';
import { CHANNEL_FLOOR, ChannelMemory } from './channel-memory.js';
import { createRelayMetrics } from './metrics.js';
import { nativeCryptoAvailable, STANDARD_WINDOW, takeInPlacePacketsFrom } from './ssh2-internals.js';
import { recycleWrites, relayPackets } from './packet-pool.js';
import { relayParkedChunks } from './parked-chunks.js';
import { createSshServer } from './ssh-server.js';
import { createGcPacer, v8FullPacing } from './gc-pacer.js';
import { LiveBytes } from './forwarding/live-bytes.js';
import { PerMemberLimit } from './per-member-limit.js';
import { Startups } from './startups.js';
import { JwksCache } from './trust/jwks-cache.js';
import { API_LEVEL } from '../protocol/api-level.js';

export interface RelayIdentity {
  nodeId: string;
  /** The control plane's issuer (lease `iss`), from enrollment. */
  issuer: string;
  /** OpenSSH private key file contents of the host key. */
  hostKey: string;
}

export interface RelayDeps {
  config: Readonly<Config>;
  clock: Clock;
  ids: Ids;
  logger: Logger;
  control: ControlClient;
  identity: RelayIdentity;
  version: string;
  /** The egress lock's firewall (iptables driver, the off driver, or a fake in tests). */
  firewall: Firewall;
  /** The chain's base rules; default: resolved from the control URL (and resolv.conf). */
  egressBase?: () => Promise<BaseRules>;
  /** Testing only: dials egress targets in place of dialTcp (node/egress/dial.ts). */
  egressDial?: Dialer;
  /** Testing only: injected handler faults (from `--test-fault`). */
  injectFault?: FaultInjector;
}

export interface Relay {
  start(): Promise<{ ssh: AddressInfo; metrics: AddressInfo }>;
  /** Graceful: stop accepting, let live channels drain (up to drainTimeout), close, report. */
  stop(): Promise<void>;
  health(opts?: { detail?: boolean }): { ok: boolean } & Record<string, unknown>;
  metricsText(): string;
  /** Runs one revocation poll now (tests, and after start). */
  pollRevocations(): Promise<void>;
  /**
   * For the process-level guard (node/process-guard.ts): an error that escaped every handler.
   * When it was raised by code a connection started, that connection is closed and this
   * returns true; otherwise it is logged and counted, and this returns false.
   */
  absorbUncaught(err: unknown, origin: string): boolean;
}

export function createRelay(deps: RelayDeps): Relay {
  const { config, clock, logger } = deps;
  const metrics = createRelayMetrics();
  const nativeCrypto = nativeCryptoAvailable();
  const connections = new Set<RelayConnection>();
  let draining = false;

  const reporter = new EventReporter({ client: deps.control, logger, maxQueue: config.eventsQueueMax, intervalMs: config.eventsFlushMs });
  const at = () => clock.now().toISOString();
  const listeners = new VirtualListeners({
    online: (exposure, port, sessionId, member) => {
      logger.info('exposure online', { exposure, port, sessionId });
      reporter.push({ type: 'exposure_online', at: at(), exposure, port, session_id: sessionId }, member);
    },
    offline: (exposure, port, member) => {
      logger.info('exposure offline', { exposure, port });
      reporter.push({ type: 'exposure_offline', at: at(), exposure, port }, member);
    },
  });
  const registry = new LeaseRegistry({ clock, maxConnectionsPerLease: config.limits.connectionsPerLease });
  const trust = new JwksCache({
    client: deps.control,
    file: join(config.dataDir, 'jwks.json'),
    clock,
    logger,
    refreshMs: config.jwksRefreshMs,
    minRefreshMs: config.jwksMinRefreshMs,
    // A key withdrawn from the JWKS (a compromised one) closes the connections it let in.
    onChange: (snap) => {
      let closed = 0;
      for (const c of connections) if (c.closeIfUntrusted(snap)) closed++;
      if (closed > 0) logger.warn('connections closed: the key that signed their lease or certificate left the JWKS', { connections: closed });
    },
  });
  const revocations = new RevocationFeed({
    client: deps.control,
    clock,
    logger,
    intervalMs: config.revocationPollMs,
    waitMs: config.revocationWaitMs,
    file: join(config.dataDir, 'revocations.json'),
    onRevoked: (leaseId) => {
      egress.revoke(leaseId);
      const closed = registry.revoke(leaseId);
      if (closed > 0) logger.info('revoked lease closed connections', { leaseId, connections: closed });
    },
    // Fail closed: a relay that cannot learn revocations must not carry or admit any lease.
    // The control plane answers 401 for good once the node enrolled again (its credential
    // replaced) or was removed, so this process is out of service until it is accepted again.
    onCredential: (accepted) => {
      if (accepted) {
        logger.info('the control plane accepts this relay\'s node credential again; accepting connections', {});
        return;
      }
      logger.error(
        'the control plane refuses this relay\'s node credential (401: the node enrolled again, or was removed): it can no longer learn revocations, so it closes every connection and accepts none until the credential is accepted again; enroll this relay again, or stop it',
        { connections: connections.size },
      );
      for (const c of connections) c.endSafely('credential_rejected');
    },
    // Fail closed likewise when the feed has not answered for --revocation-max-stale (the control
    // plane down, or the path to it cut): a lease revoked meanwhile would go on working.
    maxStaleMs: config.revocationMaxStaleMs,
    onStale: (stale) => {
      if (!stale) {
        logger.info('the revocation feed answers again and every revocation made meanwhile is known; accepting connections', {});
        return;
      }
      logger.error(
        `the revocation feed has not answered for ${Math.round((config.revocationMaxStaleMs ?? 0) / 1000)}s (--revocation-max-stale): this relay cannot learn revocations, so it closes every connection and accepts none until the feed answers again`,
        { connections: connections.size, lastError: revocations.status().lastError },
      );
      for (const c of connections) c.endSafely('revocations_stale');
    },
  });
  const egress = new EgressLock({
    firewall: deps.firewall,
    clock,
    logger,
    connectTimeoutMs: config.egress.connectTimeoutMs,
    sourcePorts: config.egress.sourcePorts,
    isRevoked: (id) => revocations.isRevoked(id),
    dial: deps.egressDial,
  });
  const rateLimiter = new AuthRateLimiter({ perMinute: config.limits.authFailuresPerMinute, clock });
  const auth = createAuthenticator({ clock, trust, identity: deps.identity, isRevoked: (id) => revocations.isRevoked(id) });

  const startups = new Startups(config.limits.startups);
  // Frees ssh2's per-packet buffers promptly under traffic (node/gc-pacer.ts).
  // Full collections by the Buffers' memory the relay does not account for as live (what its
  // open bridges and their peers' send queues hold, node/forwarding/live-bytes.ts): promoted
  // dead packets.
  const live = new LiveBytes();
  // Outgoing packets in memory used again once written (node/packet-pool.ts).
  takeInPlacePacketsFrom(relayPackets.take);
  const gcPacer = createGcPacer(config.gcEveryBytes, undefined, config.gcEveryBytes > 0 ? v8FullPacing(config.gcFullAfterBytes, () => live.total(), config.gcFullBurstBytes) : undefined);
  // One member (all its connections) may pin at most a quarter of the budget (at least one channel's growth):
  // a peer that grows windows and then sends nothing keeps what it was granted.
  const windows = new WindowBudget({
    budgetBytes: config.limits.windowBudgetBytes,
    channelMaxBytes: config.limits.channelWindowMaxBytes,
    connectionShareBytes: Math.max(config.limits.channelWindowMaxBytes - STANDARD_WINDOW, Math.floor(config.limits.windowBudgetBytes / 4)),
  });
  // One member (all its connections) may take at most a quarter of the channel memory (at least one channel's standard window).
  const channelMemory = new ChannelMemory({
    budgetBytes: config.limits.channelMemoryBytes,
    memberShareBytes: Math.max(STANDARD_WINDOW - CHANNEL_FLOOR, Math.floor(config.limits.channelMemoryBytes / 4)),
  });
  const ctx: RelayContext = {
    config,
    clock,
    ids: deps.ids,
    logger,
    metrics,
    auth,
    rateLimiter,
    registry,
    listeners,
    reporter,
    egress,
    draining: () => draining,
    windows,
    channelMemory,
    live,
    memberChannels: new PerMemberLimit(config.limits.channelsPerMember),
    memberConnections: new PerMemberLimit(config.limits.connectionsPerMember),
    ...(deps.injectFault ? { injectFault: deps.injectFault } : {}),
  };

  /** Why the relay admits and carries nothing now (fail closed), if it does not. */
  const outOfService = (): 'credential_rejected' | 'revocations_stale' | undefined =>
    revocations.credentialRejected ? 'credential_rejected' : revocations.stale ? 'revocations_stale' : undefined;

  const ssh = createSshServer({
    hostKey: deps.identity.hostKey,
    keepaliveIntervalMs: config.keepaliveIntervalMs,
    keepaliveCountMax: config.keepaliveCountMax,
    logger,
    startups,
    loginGraceMs: config.loginGraceMs,
    admit: (sock) => {
      if (draining) return 'draining';
      const out = outOfService();
      if (out) return out;
      if (rateLimiter.blocked(sock.remoteAddress ?? '')) {
        metrics.rateLimited.inc();
        return 'auth_rate_limited';
      }
      metrics.connections.inc();
      // Every byte read from an admitted peer paces collections; another 'data' listener next
      // to ssh2's costs no copy.
      sock.on('data', (chunk: Buffer) => gcPacer.read(chunk.length));
      recycleWrites(sock, relayPackets);
      return true;
    },
    onDrop: (reason) => metrics.preauthDrops.inc({ reason }),
    onConnection: (conn, info) => {
      const c = new RelayConnection(ctx, conn, info, (c) => connections.delete(c));
      connections.add(c);
      // A socket admitted before the relay went out of service reaches here only once its client's
      // identification line arrives (ssh2), which a client may hold back for the login grace: the
      // loop that closed every connection at the flip did not see it, and it would authenticate
      // with a lease the relay can no longer know to be revoked, and stay.
      const out = outOfService();
      if (out) c.endSafely(out);
    },
  });

  const activeChannels = () => [...connections].reduce((n, c) => n + c.activeChannels, 0);
  const r = metrics.registry;
  r.gauge('tunnel_node_connections', 'Open TCP connections to the SSH port, authenticated or not', () => ssh.sockets);
  r.gauge('tunnel_node_unauthenticated_connections', 'Connections accepted and not yet authenticated (held to --max-startups)', () => startups.count);
  r.gauge('tunnel_node_exposures_online', 'Virtual listeners online', () => listeners.count);
  r.gauge('tunnel_node_active_channels', 'Bridged channels (Y to X pairs) open now', () => [...connections].reduce((n, c) => n + c.bridges, 0));
  r.gauge('tunnel_node_native_crypto', '1 when ssh2 native crypto binding is loaded', () => (nativeCrypto ? 1 : 0));
  r.gauge('tunnel_node_jwks_keys', 'Keys in the cached JWKS', () => trust.status().keys);
  r.gauge('tunnel_node_revocations_known', 'Revoked leases remembered', () => revocations.status().entries);
  r.gauge('tunnel_node_events_queued', 'Connection events waiting to be sent', () => reporter.queued);
  r.gauge('tunnel_node_egress_driver', 'The egress lock driver in use (1 for the active one)', () => [
    { labels: { driver: 'iptables' }, value: egress.driver === 'iptables' ? 1 : 0 },
    { labels: { driver: 'off' }, value: egress.driver === 'off' ? 1 : 0 },
  ]);
  r.gauge('tunnel_node_egress_active_leases', 'Egress leases with rules in the firewall', () => egress.status().active_leases);
  r.counterOf('tunnel_node_egress_failures_total', 'Egress firewall changes that failed', () => egress.status().failures);
  const sendBuffers = () => [...connections].map((c) => c.sendBuffer);
  r.gauge('tunnel_node_send_buffer_bytes', 'Bytes buffered for SSH peers now, by queue (socket write queue, ssh2 key exchange queue)', () => {
    const all = sendBuffers();
    return [
      { labels: { queue: 'socket' }, value: all.reduce((n, b) => n + b.socket, 0) },
      { labels: { queue: 'key_exchange' }, value: all.reduce((n, b) => n + b.keyExchange, 0) },
    ];
  });
  r.gauge('tunnel_node_bridge_buffer_bytes', 'Bytes inside bridged channel streams now (read from one side, not yet passed to the other)', () =>
    [...connections].reduce((n, c) => n + c.bridgeBuffered, 0),
  );
  r.gauge('tunnel_node_bridge_buffer_chunks', 'Chunks (Buffers) waiting in bridged channel streams now: small packets that wait are joined, so about one per 32 KiB', () =>
    [...connections].reduce((n, c) => n + c.bridgeChunks, 0),
  );
  r.gauge('tunnel_node_live_channel_bytes', "Channel data open bridges and their peers' send queues hold now (what --gc-full-after counts as live, not garbage)", () => live.total());
  r.counterOf('tunnel_node_paced_gc_total', 'Collections the relay asked for after every --gc-every bytes read (full ones included)', () => gcPacer.collections);
  r.counterOf('tunnel_node_packet_buffers_allocated_total', 'Buffers the outgoing packet pool allocated (node/packet-pool.ts)', () => relayPackets.allocated);
  r.counterOf('tunnel_node_packet_buffers_reused_total', 'Outgoing packets built in a pooled buffer used before, given back once its write completed', () => relayPackets.reused);
  r.counterOf('tunnel_node_parked_buffers_allocated_total', 'Buffers the pool of parked channel data allocated (node/parked-chunks.ts)', () => relayParkedChunks.allocated);
  r.counterOf('tunnel_node_parked_buffers_reused_total', 'Chunks of channel data that had to wait, copied into a pooled buffer used before', () => relayParkedChunks.reused);
  r.counterOf('tunnel_node_paced_full_gc_total', 'Full collections among them (--gc-full-after)', () => gcPacer.fullCollections);
  r.gauge('tunnel_node_send_buffer_limit_bytes', 'The per-connection send bound (--max-send-buffer)', () => config.limits.sendBufferBytes);
  const win = () => windows.status();
  r.gauge('tunnel_node_window_budget_bytes', "Adaptive windows: bytes all channels with Tunnel's CLI may hold above the standard 2 MiB window together (--window-budget)", () => windows.budget);
  r.gauge('tunnel_node_window_channel_max_bytes', 'Adaptive windows: the largest window one channel may grow to (--max-channel-window)', () => windows.channelMax);
  r.gauge('tunnel_node_window_reserved_bytes', 'Adaptive windows: bytes reserved above the standard window now, all channels', () => win().reserved);
  r.gauge('tunnel_node_window_reserved_peak_bytes', 'Adaptive windows: the most bytes reserved at once since start (never above the budget)', () => win().peakReserved);
  r.gauge('tunnel_node_window_channels', 'Adaptive windows: channels with Tunnel CLI peers, and how many have grown above the standard window', () => {
    const s = win();
    return [
      { labels: { state: 'all' }, value: s.channels },
      { labels: { state: 'grown' }, value: s.grown },
    ];
  });
  const mem = () => channelMemory.status();
  r.gauge('tunnel_node_channel_memory_budget_bytes', 'Channel data all channels may hold beyond 64 KiB each (--channel-memory)', () => channelMemory.budget);
  r.gauge('tunnel_node_channel_memory_taken_bytes', 'Of it, taken by open channels now (each up to its standard 2 MiB window)', () => mem().taken);
  r.gauge('tunnel_node_channel_memory_peak_bytes', 'The most taken at once since start (never above the budget)', () => mem().peak);
  r.gauge('tunnel_node_channel_memory_short_channels', 'Open channels holding less than the standard window because the budget or their member\'s share ran out', () => mem().short());
  r.gauge('tunnel_node_send_throttled_connections', 'Connections over --max-send-buffer now (not being fed)', () => sendBuffers().filter((b) => b.over).length);
  r.counterOf(
    'tunnel_node_events_dropped_total',
    'Connection events given up: queue_full (the queue was full while control was slow or unreachable: the oldest event of the member holding the most), refused (control refused them for good, alone or in a batch), rejected (control refused them one by one and recorded the rest of their batch)',
    () => [
      { labels: { reason: 'queue_full' }, value: reporter.droppedBy('queue_full') },
      { labels: { reason: 'refused' }, value: reporter.droppedBy('refused') },
      { labels: { reason: 'rejected' }, value: reporter.droppedBy('rejected') },
    ],
  );
  r.counterOf('tunnel_node_events_sent_total', 'Connection events the control plane accepted', () => reporter.sent);
  r.counterOf('tunnel_node_events_throttled_total', 'Event batches the control plane answered 429 (rate limited); held until its Retry-After, not dropped', () => reporter.throttled);

  /** Counts and states by default; node id, exposure names and lease ids only with `detail`. */
  const health = (opts: { detail?: boolean } = {}) => {
    const jwks = trust.status();
    const out = outOfService();
    const { lease_ids: leaseIds, ...egressStatus } = egress.status();
    return {
      ok: jwks.keys > 0 && !draining && !out,
      status: draining ? 'draining' : (out ?? (jwks.keys > 0 ? 'ok' : 'no_trust')),
      version: deps.version,
      api_level: API_LEVEL,
      native_crypto: nativeCrypto,
      egress_driver: egress.driver,
      egress: opts.detail ? { ...egressStatus, lease_ids: leaseIds } : egressStatus,
      jwks,
      revocations: revocations.status(),
      connections: ssh.sockets,
      unauthenticated: startups.count,
      exposures_online: listeners.count,
      events: { queued: reporter.queued, dropped: reporter.dropped },
      heartbeat: heartbeats.status(),
      ...(opts.detail ? { node_id: deps.identity.nodeId, exposures: listeners.online() } : {}),
    };
  };
  const healthServer = createHealthServer({ health, metrics: () => r.render() }, config.healthDetail, logger);

  const heartbeats = new HeartbeatLoop({
    control: deps.control,
    reporter,
    logger,
    clock,
    intervalMs: config.heartbeatMs,
    // Sent with every heartbeat: connections reported open before it were left by an earlier run.
    startedAt: deps.clock.now().toISOString(),
    report: () => ({
      version: deps.version,
      native_crypto: nativeCrypto,
      egress_driver: egress.driver,
      connections: ssh.sockets,
      exposures: listeners.online(),
    }),
    stopping: () => draining,
  });
  r.gauge('tunnel_node_clock_offset_seconds', "The control plane's clock minus this relay's, from the last heartbeat answer (positive: this relay is behind); none before the first", () => {
    const ms = heartbeats.clockOffsetMs;
    return ms === undefined ? [] : Math.round(ms) / 1000;
  });

  return {
    async start() {
      if (!nativeCrypto) logger.warn('ssh2 native crypto binding not loaded: throughput is about a third lower', {});
      // The egress lock first: the chain is closed before anything else talks to the network.
      await egress.start(await (deps.egressBase ?? (() => resolveBaseRules(config.controlUrl)))());
      if (egress.driver === 'off') {
        logger.warn('EGRESS LOCK OFF: --egress-driver off was given; egress targets are checked by the relay only, the kernel does not enforce them', { egressDriver: 'off' });
      } else {
        logger.info('egress lock ready', { egressDriver: egress.driver, uid: config.egress.uid, sourcePorts: config.egress.sourcePorts });
      }
      await trust.init();
      if (!trust.snapshot) logger.error('no JWKS available (control plane unreachable and no cached copy): every client will be refused until one is fetched', {});
      await revocations.load();
      await revocations.pollOnce();
      revocations.start();
      trust.start();
      reporter.start();
      heartbeats.start();
      const sshAddr = await ssh.listen(config.listen.host, config.listen.port);
      const metricsAddr = await healthServer.listen(config.metricsListen.host, config.metricsListen.port);
      logger.info('relay ready', {
        nodeId: deps.identity.nodeId,
        ssh: `${sshAddr.address}:${sshAddr.port}`,
        metrics: `${metricsAddr.address}:${metricsAddr.port}`,
        nativeCrypto,
      });
      return { ssh: sshAddr, metrics: metricsAddr };
    },

    async stop() {
      if (draining) return;
      draining = true;
      logger.info('relay draining', { connections: connections.size, channels: activeChannels() });
      await ssh.stopAccepting();
      const deadline = Date.now() + config.drainTimeoutMs;
      // Live channels, and what connections that already closed left to deliver (a Y that sent
      // data and hung up before X or the egress target took it all): the stop cuts both.
      const busy = () => activeChannels() > 0 || registry.leftHeld > 0;
      while (busy() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
      const left = activeChannels();
      const leftHeld = registry.leftHeld;
      for (const c of connections) c.endSafely('shutdown');
      const closing = Promise.all([...connections].map((c) => c.closed));
      await Promise.race([closing, new Promise((res) => setTimeout(res, 3000).unref())]);
      for (const c of connections) c.endSafely('shutdown', true);
      heartbeats.stop();
      registry.close();
      await egress.stop().catch((err: unknown) => logger.error('egress lease rules not removed at stop; the chain stays closed', { err }));
      trust.stop();
      await revocations.stop();
      await reporter.stop();
      await healthServer.close();
      logger.info('relay stopped', { channelsCutAtDeadline: left, closedConnectionsCutAtDeadline: leftHeld, eventsSent: reporter.sent, eventsDropped: reporter.dropped });
    },

    health,
    metricsText: () => r.render(),
    pollRevocations: () => revocations.pollOnce(),
    absorbUncaught(err, origin) {
      const owner = currentFaultOwner();
      metrics.uncaughtErrors.inc({ attributed: owner ? 'true' : 'false' });
      if (owner) {
        owner.fault(err, origin);
        return true;
      }
      logger.error('error outside any connection', { origin, err, stack: err instanceof Error ? err.stack : undefined });
      return false;
    },
  };
}
