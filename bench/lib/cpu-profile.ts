/**
 * Summarises a V8 CPU profile (`node --cpu-prof` writes `*.cpuprofile`): where a process's busy
 * time went, as two markdown tables: categories (GC, crypto, socket writes, ssh2 ...) and the
 * top functions by self time. Idle time (`(idle)`: the event loop waiting) is excluded from the
 * shares, so they are shares of the time the process was on a CPU as far as V8 saw it.
 *
 * API (three calls; everything else is internal):
 *   const s = summariseCpuProfile(pathOrParsedProfile, { top: 15, categories: [...extra rules] });
 *   process.stdout.write(formatCpuSummary(s, 'relay'));
 *   readCpuProfile(path)  // the parsed file, if you need it
 *
 * How a sample is classified: the sample's stack is walked from the leaf (the function that was
 * running) towards the root; the first frame a rule matches names the category. Native frames
 * without a script (`writev`, `encrypt`, `allocUnsafe`'s C++ ...) have no URL, so for them the
 * walk usually reaches the JavaScript frame that called them: a C++ `writev` under
 * node:internal/stream_base_commons counts as a socket write. Extra rules passed in `categories`
 * are tried before the built-in ones on every frame (e.g. `{ name: 'drizzle', url: /drizzle-orm/ }`).
 *
 * Self time per sample is the time until the next sample (V8's `timeDeltas`), so the figures
 * are milliseconds of wall time the sampled thread spent there (the main thread only: libuv's
 * thread pool, e.g. async crypto or fs, is not in the profile).
 *
 * Also a command: `node dist/bench/lib/cpu-profile.js FILE.cpuprofile... [--top N]`.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/** The parts of V8's .cpuprofile format used here (Chrome DevTools protocol `Profiler.Profile`). */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

type Frame = CpuProfile['nodes'][number]['callFrame'];

/** A category rule: a frame whose function name matches `fn` and whose script URL matches `url` (both optional). */
export interface CategoryRule {
  name: string;
  fn?: RegExp;
  url?: RegExp;
}

export interface CpuSummaryOptions {
  /** How many functions in the self-time table (default 15). */
  top?: number;
  /** Rules tried before the built-in ones (first match wins). */
  categories?: CategoryRule[];
}

export interface CpuSummaryRow {
  name: string;
  ms: number;
  /** Share of busy time, 0..1. */
  share: number;
}

export interface CpuSummary {
  /** Profile length (ms), busy (not idle) and idle. */
  totalMs: number;
  busyMs: number;
  idleMs: number;
  categories: CpuSummaryRow[];
  /** Top functions by self time; `name` is `function (file:line)`. */
  functions: CpuSummaryRow[];
}

/** The process was waiting, not working: excluded from busy time. */
const IDLE = '(idle)';

/**
 * Built-in categories, tried on each frame from the leaf up. Native frames with no URL only
 * match by name; otherwise the walk moves on to their caller.
 */
const BUILTIN: CategoryRule[] = [
  { name: 'GC', fn: /^\(garbage collector\)$/ },
  { name: 'VM / native, no JS caller ((program))', fn: /^\(program\)$/ },
  // ssh2's ciphers and MACs, JS and its native binding (sshcrypto.node), and node:crypto.
  { name: 'crypto: cipher / MAC', url: /ssh2\/lib\/protocol\/crypto|node:internal\/crypto\/cipher|node:internal\/crypto\/hash/ },
  { name: 'crypto: other (random, sign, kex)', url: /node:internal\/crypto\// },
  { name: 'socket write', fn: /^(writev|writeBuffer|writeUtf8String|writeLatin1String|writeAsciiString)$/ },
  { name: 'socket write', fn: /^(writevGeneric|writeGeneric|_writeGeneric|_writev|_write|handleWriteReq|afterWriteDispatched|onWriteComplete|afterWrite|uncork|cork|clearBuffer)$/, url: /node:(internal\/stream_base_commons|net|internal\/streams\/writable)/ },
  { name: 'socket read', fn: /^(onStreamRead|readStop|readStart|tryReadStart)$/ },
  { name: 'ssh2: packet parsing (Protocol, utils)', url: /ssh2\/lib\/protocol\/(Protocol|utils|handlers|kex|node-fs-compat|zlib|constants)/ },
  { name: 'ssh2: channels, client, server', url: /ssh2\/lib\// },
  { name: 'module loading (start-up)', url: /node:internal\/modules\/|node:internal\/bootstrap\// },
  { name: 'Buffer alloc / copy', url: /node:buffer|node:internal\/buffer/ },
  { name: 'node streams / events', url: /node:internal\/streams|node:events|node:stream|node:internal\/process\/task_queues|node:internal\/timers/ },
  { name: 'other libraries (node_modules)', url: /node_modules\// },
  { name: 'node internals (other)', url: /^node:/ },
  // Last: anything else with a script is ours (dist/, or a test's file).
  { name: 'our code', url: /./ },
];

function matches(rule: CategoryRule, f: Frame): boolean {
  if (rule.fn && !rule.fn.test(f.functionName)) return false;
  if (rule.url && !rule.url.test(f.url)) return false;
  return Boolean(rule.fn || rule.url);
}

/** Reads and checks a .cpuprofile file. */
export function readCpuProfile(path: string): CpuProfile {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Partial<CpuProfile>;
  if (!Array.isArray(p.nodes) || !Array.isArray(p.samples) || !Array.isArray(p.timeDeltas)) throw new Error(`${path}: not a V8 CPU profile (nodes, samples, timeDeltas)`);
  return p as CpuProfile;
}

const shortUrl = (url: string) => (url.startsWith('file://') ? url.replace(/^.*\/(node_modules\/|dist\/)/, '$1') : url);

/** Where a profile's busy time went, by category and by function (self time). */
export function summariseCpuProfile(profile: CpuProfile | string, opts: CpuSummaryOptions = {}): CpuSummary {
  const p = typeof profile === 'string' ? readCpuProfile(profile) : profile;
  const rules = [...(opts.categories ?? []), ...BUILTIN];
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const category = new Map<number, string>(); // node id -> category, memoised
  const categoryOf = (id: number): string => {
    const known = category.get(id);
    if (known !== undefined) return known;
    let found = 'unattributed native';
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)?.callFrame;
      if (!f) break;
      const rule = rules.find((r) => matches(r, f));
      if (rule) {
        found = rule.name;
        break;
      }
    }
    category.set(id, found);
    return found;
  };

  const selfMs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    // timeDeltas[i] is the time from sample i-1 to sample i: charge it to the sample before.
    const ms = (p.timeDeltas[i + 1] ?? 0) / 1000;
    const id = p.samples[i]!;
    selfMs.set(id, (selfMs.get(id) ?? 0) + ms);
  }

  let idleMs = 0;
  let busyMs = 0;
  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, ms] of selfMs) {
    const f = byId.get(id)?.callFrame;
    if (!f) continue;
    if (f.functionName === IDLE) {
      idleMs += ms;
      continue;
    }
    busyMs += ms;
    const c = categoryOf(id);
    cats.set(c, (cats.get(c) ?? 0) + ms);
    const name = `${f.functionName || '(anonymous)'}${f.url ? ` (${shortUrl(f.url)}:${f.lineNumber + 1})` : ''}`;
    fns.set(name, (fns.get(name) ?? 0) + ms);
  }
  const rows = (m: Map<string, number>, n = Infinity): CpuSummaryRow[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, ms, share: busyMs > 0 ? ms / busyMs : 0 }));
  return { totalMs: (p.endTime - p.startTime) / 1000, busyMs, idleMs, categories: rows(cats), functions: rows(fns, opts.top ?? 15) };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const ms = (x: number) => x.toFixed(0);

/** Two markdown tables (categories, then top functions by self time) under a heading line. */
export function formatCpuSummary(s: CpuSummary, title: string): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [
    `**${title}**: busy ${ms(s.busyMs)} ms of ${ms(s.totalMs)} ms profiled (idle ${ms(s.idleMs)} ms excluded from the shares)`,
    '',
    line(['category', 'ms', 'share of busy']),
    line(['---', '---:', '---:']),
    ...s.categories.map((r) => line([r.name, ms(r.ms), pct(r.share)])),
    '',
    line(['function (self time)', 'ms', 'share of busy']),
    line(['---', '---:', '---:']),
    ...s.functions.map((r) => line([r.name.replaceAll('|', '\\|'), ms(r.ms), pct(r.share)])),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
  if (positionals.length === 0) {
    process.stderr.write('usage: node dist/bench/lib/cpu-profile.js FILE.cpuprofile... [--top N]\n');
    process.exit(2);
  }
  for (const file of positionals) process.stdout.write(`${formatCpuSummary(summariseCpuProfile(file, { top: Number(values.top) }), basename(file))}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    process.stderr.write(`cpu-profile: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
