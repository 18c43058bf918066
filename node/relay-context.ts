import type { Authenticator } from './auth/authenticate.js';
import type { AuthRateLimiter } from './auth/rate-limit.js';
import type { ChannelMemory } from './channel-memory.js';
import type { Config } from './config.js';
import type { Ids } from './deps.js';
import type { Clock } from '../shared/clock.js';
import type { EventReporter } from './events/reporter.js';
import type { FaultInjector } from './fault-guard.js';
import type { EgressLock } from './egress/egress-lock.js';
import type { VirtualListeners } from './forwarding/virtual-listeners.js';
import type { LiveBytes } from './forwarding/live-bytes.js';
import type { PerMemberLimit } from './per-member-limit.js';
import type { LeaseRegistry } from './leases/lease-registry.js';
import type { Logger } from '../shared/logger.js';
import type { RelayMetrics } from './metrics.js';
import type { WindowBudget } from './adaptive-window.js';

/** What every connection shares; built once by createRelay. */
export interface RelayContext {
  config: Readonly<Config>;
  clock: Clock;
  ids: Ids;
  logger: Logger;
  metrics: RelayMetrics;
  auth: Authenticator;
  rateLimiter: AuthRateLimiter;
  registry: LeaseRegistry;
  listeners: VirtualListeners;
  reporter: EventReporter;
  egress: EgressLock;
  /** True once shutdown began: no new forwards or channels. */
  draining(): boolean;
  /** Adaptive windows for channels with Tunnel's own CLI (node/adaptive-window.ts). */
  windows: WindowBudget;
  /** What each channel may hold at the relay, in bytes: all channels, and each member's (node/channel-memory.ts). */
  channelMemory: ChannelMemory;
  /** The channel data open bridges hold (the gc pacer's live bytes): bridges register while open. */
  live: LiveBytes;
  /** Each member's channels across its connections, against --max-channels-per-member. */
  memberChannels: PerMemberLimit;
  /** Each member's authenticated connections, against --max-connections-per-member. */
  memberConnections: PerMemberLimit;
  /** Testing only: injected handler faults (`--test-fault`). */
  injectFault?: FaultInjector;
}
