import type { Limits } from './config.js';

/** X's connection refused a channel before asking X: its slots, or the opener's share, are used up. */
export class OpenRefusedError extends Error {
  override readonly name = 'OpenRefusedError';
  constructor(
    readonly reason: 'exposure_full' | 'opener_share',
    readonly limit: number,
  ) {
    super(reason);
  }
}

/**
 * One connection's channel slots: its open channels and its pending opens, against
 * --max-channels-per-connection and --max-pending-opens (Y's side), and on X's side each
 * opener's (Y's user's) share, --max-channels-per-opener, so one Y cannot take all of an
 * exposure's slots from the others.
 */
export class ChannelSlots {
  readonly #limits: Pick<Limits, 'channelsPerConnection' | 'channelsPerOpener' | 'pendingOpens'>;
  #channels = 0;
  #pending = 0;
  /** X's side: slots held per opener. */
  readonly #byOpener = new Map<string, number>();

  constructor(limits: Pick<Limits, 'channelsPerConnection' | 'channelsPerOpener' | 'pendingOpens'>) {
    this.#limits = limits;
  }

  /** Open SSH channels (Y's, or X's forwarded ones), for limits and draining. */
  get open(): number {
    return this.#channels;
  }

  /** Y's side: why a new channel open is refused now, if it is; else call `beginOpen`. */
  refuseOpen(): { reason: 'too_many_pending_opens' | 'too_many_channels'; limit: number } | undefined {
    const { pendingOpens, channelsPerConnection } = this.#limits;
    if (this.#pending >= pendingOpens) return { reason: 'too_many_pending_opens', limit: pendingOpens };
    if (this.#channels + this.#pending >= channelsPerConnection) return { reason: 'too_many_channels', limit: channelsPerConnection };
    return undefined;
  }

  /** Y's side: an open is under way (X or the egress target not answered yet). */
  beginOpen(): void {
    this.#pending++;
  }

  endOpen(): void {
    this.#pending--;
  }

  /** A channel is open (confirmed). */
  opened(): void {
    this.#channels++;
  }

  closed(): void {
    this.#channels--;
  }

  /**
   * X's side: takes one of `opener`'s slots from now (not only once X confirms, so concurrent
   * opens cannot overshoot), or throws OpenRefusedError. Returns its release (idempotent).
   */
  reserve(opener: string): () => void {
    const { channelsPerConnection, channelsPerOpener } = this.#limits;
    if (this.#channels >= channelsPerConnection) throw new OpenRefusedError('exposure_full', channelsPerConnection);
    const held = this.#byOpener.get(opener) ?? 0;
    if (held >= channelsPerOpener) throw new OpenRefusedError('opener_share', channelsPerOpener);
    this.#byOpener.set(opener, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.#byOpener.get(opener) ?? 1) - 1;
      if (n > 0) this.#byOpener.set(opener, n);
      else this.#byOpener.delete(opener);
    };
  }
}
