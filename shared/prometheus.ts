/**
 * A small Prometheus registry, shared by the control plane and the relay: labelled counters and
 * values read at scrape time, rendered in the text exposition format (version 0.0.4).
 */
export type Labels = Record<string, string>;

/** Most label values (methods, routes, statuses) need no escaping: counted on every request, tested before replacing. */
const NEEDS_ESCAPE = /[\\\n"]/;
const escape = (v: string) => (NEEDS_ESCAPE.test(v) ? v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : v);
/** `{k="v",...}` in the labels' own order ('' for none); counted on every request, so without an entries array per call. */
const labelText = (l: Labels) => {
  let text = '';
  for (const k in l) text += `${text ? ',' : '{'}${k}="${escape(l[k]!)}"`;
  return text && `${text}}`;
};

export class Counter {
  #values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const cur = this.#values.get(key);
    if (cur) cur.value += by;
    else this.#values.set(key, { labels, value: by });
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels))?.value ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.#values.values()) out.push(`${this.name}${labelText(labels)} ${value}`);
    return out;
  }
}

/** A value read at scrape time: a gauge, or a counter whose count is kept elsewhere. */
export class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly read: () => number | { labels: Labels; value: number }[],
    readonly type: 'gauge' | 'counter' = 'gauge',
  ) {}
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    const v = this.read();
    if (typeof v === 'number') out.push(`${this.name} ${v}`);
    else for (const { labels, value } of v) out.push(`${this.name}${labelText(labels)} ${value}`);
    return out;
  }
}

export class MetricsRegistry {
  #metrics: (Counter | Gauge)[] = [];
  counter(name: string, help: string): Counter {
    const c = new Counter(name, help);
    this.#metrics.push(c);
    return c;
  }
  gauge(name: string, help: string, read: Gauge['read']): Gauge {
    const g = new Gauge(name, help, read);
    this.#metrics.push(g);
    return g;
  }
  /** A monotonic count owned by another object, read at scrape time (`_total` names are counters). */
  counterOf(name: string, help: string, read: Gauge['read']): Gauge {
    const g = new Gauge(name, help, read, 'counter');
    this.#metrics.push(g);
    return g;
  }
  render(): string {
    return `${this.#metrics.flatMap((m) => m.render()).join('\n')}\n`;
  }
}
