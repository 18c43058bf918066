import type { Duplex } from 'node:stream';
import type { SendGate } from '../send-budget.js';

/**
 * A listener that exists only inside the relay: exposure `name:port`, bound by X's
 * `tcpip-forward`. No socket is ever bound for it (DESIGN: Y must not reach Z's loopback).
 */
export interface VirtualListener {
  exposure: string;
  port: number;
  /** X's connection. */
  sessionId: string;
  leaseId: string;
  /** Its lease's subject: whose the exposure's online and offline events are (EventReporter.push). */
  member: string;
  /** Exactly what X requested; `forwarded-tcpip` must echo these or OpenSSH refuses the channel. */
  bindAddr: string;
  bindPort: number;
  /**
   * Asks X to open a `forwarded-tcpip` channel for a connection from `origin` (Y's own address and
   * port, originator.ts), on behalf of `opener` (Y's user: each holds at most its share of X's
   * channel slots). `abandoned` aborts once the open is given up (--open-timeout): a channel X
   * confirms later is closed unread, so what X was offered on it is no longer held for it.
   */
  open(origin: { addr: string; port: number }, opener: string, abandoned?: AbortSignal): Promise<Duplex>;
  /** Credits bytes bridged through this listener to X's connection. */
  account?(bytesIn: number, bytesOut: number): void;
  /** X's send bound: bridges stop feeding X's channels while X is over it. */
  gate?: SendGate;
  /**
   * Keeps `bridge` (into a channel `open` gave) with X's connection, which aborts it as it ends
   * (at once if it has); returns its release, for the bridge's close.
   */
  hold?(bridge: HeldBridge): () => void;
}

/** A bridge into one of X's channels, as X's connection keeps it (VirtualListener.hold). */
export interface HeldBridge {
  abort(): void;
  /** Whether X closed its channel (its CLOSE): X's socket closing then leaves the bridge to end on its own. */
  closedByX(): boolean;
}

export interface VirtualListenerEvents {
  online(exposure: string, port: number, sessionId: string, member: string): void;
  offline(exposure: string, port: number, member: string): void;
}

const keyOf = (exposure: string, port: number) => `${exposure}:${port}`;

/**
 * Every virtual listener of this relay. Several connections may hold the same `name:port`
 * (a reconnecting or renewing X): the newest takes new channels, older ones keep their
 * live channels until they go away (make before break).
 */
export class VirtualListeners {
  #byKey = new Map<string, VirtualListener[]>();
  #events: VirtualListenerEvents;

  constructor(events: VirtualListenerEvents) {
    this.#events = events;
  }

  add(l: VirtualListener): void {
    const key = keyOf(l.exposure, l.port);
    const list = this.#byKey.get(key) ?? [];
    const first = list.length === 0;
    list.push(l);
    this.#byKey.set(key, list);
    if (first) this.#events.online(l.exposure, l.port, l.sessionId, l.member);
  }

  remove(l: VirtualListener): boolean {
    const key = keyOf(l.exposure, l.port);
    const list = this.#byKey.get(key);
    const i = list?.indexOf(l) ?? -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    if (list.length === 0) {
      this.#byKey.delete(key);
      this.#events.offline(l.exposure, l.port, l.member);
    }
    return true;
  }

  /** Removes every listener of a closed connection. */
  removeSession(sessionId: string): VirtualListener[] {
    const gone: VirtualListener[] = [];
    for (const list of [...this.#byKey.values()]) {
      for (const l of list.filter((x) => x.sessionId === sessionId)) {
        this.remove(l);
        gone.push(l);
      }
    }
    return gone;
  }

  /** The listener that takes new channels for `name:port`: the newest. */
  find(exposure: string, port: number): VirtualListener | undefined {
    return this.#byKey.get(keyOf(exposure, port))?.at(-1);
  }

  /** The ports exposure `name` is bound on here (to tell "wrong port" from "offline"). */
  portsOf(exposure: string): number[] {
    return [...this.#byKey.values()].flatMap((list) => (list[0]?.exposure === exposure ? [list[0].port] : [])).sort((a, b) => a - b);
  }

  /** Online `name:port` pairs, for heartbeats and metrics. */
  online(): { name: string; port: number }[] {
    return [...this.#byKey.values()].flatMap((list) => (list[0] ? [{ name: list[0].exposure, port: list[0].port }] : []));
  }

  get count(): number {
    return this.#byKey.size;
  }
}
