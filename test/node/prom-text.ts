/**
 * A strict reader of the Prometheus text exposition format (0.0.4), enough to check what the
 * relay serves on /metrics: every sample belongs to a metric declared with HELP and TYPE before
 * it, names and labels are well formed, values are numbers. Throws on anything else.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromText {
  types: Map<string, string>;
  samples: PromSample[];
  /** The value of `name` with exactly `labels` (0 when the series is absent, as for a fresh counter). */
  value(name: string, labels?: Record<string, string>): number;
  /** Whether the series exists at all. */
  has(name: string, labels?: Record<string, string>): boolean;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*';
const VALUE = String.raw`[-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)`;
const SAMPLE_RE = new RegExp(`^(${NAME})(\\{(.*)\\})? (${VALUE})(?: [-+]?[0-9]+)?$`);
const PAIR_RE = new RegExp(`^(${LABEL})="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"(,|$)`);
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.length > 0) {
    const m = PAIR_RE.exec(rest);
    if (!m) throw new Error(`malformed labels in: ${line}`);
    const key = m[1]!;
    if (key in labels) throw new Error(`duplicate label ${key} in: ${line}`);
    labels[key] = m[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    rest = rest.slice(m[0].length);
  }
  return labels;
}

const keyOf = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(',')}}`;

export function parsePrometheusText(text: string): PromText {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: PromSample[] = [];
  const byKey = new Map<string, number>();
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
      if (!m) continue; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (kind === 'HELP') {
        if (helps.has(name)) throw new Error(`second HELP for ${name}`);
        helps.add(name);
      } else {
        if (types.has(name)) throw new Error(`second TYPE for ${name}`);
        if (!TYPES.has(rest)) throw new Error(`unknown TYPE ${rest} for ${name}`);
        types.set(name, rest);
      }
      continue;
    }
    const m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`malformed sample line: ${line}`);
    const name = m[1]!;
    if (!types.has(name) || !helps.has(name)) throw new Error(`sample of ${name} before its HELP and TYPE`);
    const labels = m[3] === undefined ? {} : parseLabels(m[3], line);
    const value = Number(m[4]!.replace(/^([-+]?)Inf$/, '$1Infinity'));
    const key = keyOf(name, labels);
    if (byKey.has(key)) throw new Error(`duplicate series ${key}`);
    byKey.set(key, value);
    samples.push({ name, labels, value });
  }
  return {
    types,
    samples,
    value: (name, labels = {}) => byKey.get(keyOf(name, labels)) ?? 0,
    has: (name, labels = {}) => byKey.has(keyOf(name, labels)),
  };
}
