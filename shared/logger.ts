/**
 * Structured logging for the control plane, the relay and the CLI's long-running commands: one
 * JSON object per line, constant messages, variables in fields. Never pass tokens, keys or
 * passwords: log lease ids, serials and key fingerprints instead.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. `{ sessionId }`). */
  child(fields: LogFields): Logger;
}

export const noopLogger: Logger = {
  info() {},
  warn() {},
  error() {},
  child() {
    return noopLogger;
  },
};

/**
 * A peer's text as a log field: at most `max` characters (and no half of a surrogate pair left
 * at the cut), then how many more there were. Anyone who reaches a relay can hand it tens of KB
 * of text (a user name, a forwarding host, a DISCONNECT description) for each line it logs.
 */
export function loggable(value: unknown, max: number): string {
  const s = typeof value === 'string' ? value : String(value);
  if (s.length <= max) return s;
  const cut = /[\ud800-\udbff]/.test(s[max - 1] ?? '') ? max - 1 : max;
  return `${s.slice(0, cut)}...(${s.length - cut} more)`;
}

/** Keys every line has; a field of the same name is written as `field_<name>` instead. */
const RESERVED = new Set(['time', 'level', 'msg']);

/** One JSON object per line, written through `write` (stderr in the binaries). */
export function createJsonLogger(write: (line: string) => void, base: LogFields = {}, now: () => Date = () => new Date()): Logger {
  return new JsonLogger(write, base, now);
}

/**
 * A class, not an object of closures: the relay makes a child per connection (issue 11, 40 KB
 * per idle exposure), and methods on the prototype cost it nothing.
 */
class JsonLogger implements Logger {
  readonly #write: (line: string) => void;
  readonly #base: LogFields;
  readonly #now: () => Date;

  constructor(write: (line: string) => void, base: LogFields, now: () => Date) {
    this.#write = write;
    this.#base = base;
    this.#now = now;
  }

  info(msg: string, fields?: LogFields): void {
    this.#emit('info', msg, fields);
  }

  warn(msg: string, fields?: LogFields): void {
    this.#emit('warn', msg, fields);
  }

  error(msg: string, fields?: LogFields): void {
    this.#emit('error', msg, fields);
  }

  child(fields: LogFields): Logger {
    // Object.assign, not `{ ...base, ...fields }`: V8 gives each object built by a hot spread
    // its own hidden class (a map and its descriptors, about 400 bytes per connection).
    return new JsonLogger(this.#write, Object.assign({}, this.#base, fields), this.#now);
  }

  #emit(level: string, msg: string, fields?: LogFields): void {
    const out: LogFields = { time: this.#now().toISOString(), level, msg };
    // The base, then this line's fields over it (a field named as a base one takes its place),
    // without a merged copy of both per line.
    put(out, this.#base);
    if (fields) put(out, fields);
    this.#write(`${JSON.stringify(out, replacer)}\n`);
  }
}

/** Copies `fields` into `out`, renaming the line's own keys (time, level, msg) to `field_<key>`. */
function put(out: LogFields, fields: LogFields): void {
  for (const [k, v] of Object.entries(fields)) out[RESERVED.has(k) ? `field_${k}` : k] = v;
}

/** Errors anywhere in a line (not only as a top-level field) as what `describeError` says; bigints as text. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return describeError(value);
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/**
 * What a log line says about an error: name, message, code (errno, SQLSTATE or our own) and the
 * chain of causes, never its other own properties (which may carry request data). A failed
 * database query (drizzle's DrizzleQueryError) is logged as its SQL text and the database's
 * reason only: its own message lists the query's parameters, which are user input and may be
 * secrets, while the reason sits in `cause`. An AggregateError lists its first errors.
 */
export function describeError(err: Error, depth = 0): LogFields {
  const e = err as Error & { code?: unknown; query?: unknown; params?: unknown; errors?: unknown };
  const out: LogFields = { name: e.name };
  if (typeof e.query === 'string' && 'params' in e) {
    out.message = 'failed query';
    out.query = e.query.slice(0, 1000);
  } else {
    out.message = String(e.message).slice(0, 1000);
  }
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code;
  if (depth < 4) {
    if (e.cause instanceof Error) out.cause = describeError(e.cause, depth + 1);
    else if (e.cause !== undefined && (typeof e.cause !== 'object' || e.cause === null)) out.cause = String(e.cause).slice(0, 200);
    if (Array.isArray(e.errors)) out.errors = e.errors.slice(0, 4).map((x) => (x instanceof Error ? describeError(x, depth + 1) : String(x).slice(0, 200)));
  }
  return out;
}

/** Collects lines in memory; for tests that assert on what was logged. */
export function createMemoryLogger(): Logger & { lines: { level: string; msg: string; fields: LogFields }[] } {
  const lines: { level: string; msg: string; fields: LogFields }[] = [];
  const make = (base: LogFields): Logger => ({
    info: (msg, fields) => lines.push({ level: 'info', msg, fields: { ...base, ...fields } }),
    warn: (msg, fields) => lines.push({ level: 'warn', msg, fields: { ...base, ...fields } }),
    error: (msg, fields) => lines.push({ level: 'error', msg, fields: { ...base, ...fields } }),
    child: (fields) => make({ ...base, ...fields }),
  });
  return Object.assign(make({}), { lines });
}
