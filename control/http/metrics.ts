import { Gauge, MetricsRegistry, type Counter, type Labels } from '../../shared/prometheus.js';

/**
 * Per-replica Prometheus counters. Nothing here is needed for correctness; each replica exposes
 * its own, and Prometheus sums them. Counters are made on first use, by name.
 */
export class Metrics {
  readonly #registry = new MetricsRegistry();
  readonly #counters = new Map<string, Counter>();

  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    let c = this.#counters.get(name);
    if (!c) {
      c = this.#registry.counter(name, help);
      this.#counters.set(name, c);
    }
    c.inc(labels, by);
  }

  /** Prometheus text exposition format 0.0.4; `gauges` are computed by the caller at scrape time. */
  render(gauges: { name: string; help: string; value: number }[] = []): string {
    const extra = gauges.flatMap((g) => new Gauge(g.name, g.help, () => g.value).render());
    return this.#registry.render() + (extra.length ? `${extra.join('\n')}\n` : '');
  }
}
