import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseHostPort as parseAddress, type HostPort } from '../protocol/host-port.js';
import { UsageError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  server: { type: 'string' },
  'control-url': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/**
 * parseArgs with the common options, turning its errors into a UsageError for `command`. An option
 * that takes one value given more than once (`--name a --name b`, or --server and its alias
 * --control-url together) is refused rather than silently taken as its last value; options
 * declared `multiple` repeat, and a repeated switch (`--json --json`) says nothing new.
 */
export function parseCommand<O extends Options>(command: string, argv: string[], options: O) {
  let r: ReturnType<typeof parseArgs>;
  const all: Options = { ...COMMON_OPTIONS, ...options };
  try {
    r = parseArgs({ args: negativeValuesJoined(argv, all), options: all, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    throw new UsageError(command, (err as Error).message.split('\n')[0]!);
  }
  refuseRepeated(command, r.tokens ?? [], all);
  const v = r.values as Record<string, unknown>;
  return {
    values: r.values as { [K in keyof (O & typeof COMMON_OPTIONS)]?: (O & typeof COMMON_OPTIONS)[K] extends { type: 'boolean' } ? boolean : (O & typeof COMMON_OPTIONS)[K] extends { multiple: true } ? string[] : string },
    positionals: r.positionals,
    server: (v.server ?? v['control-url']) as string | undefined,
    json: v.json === true,
    help: v.help === true,
  };
}

/** Options that name one value under two spellings: given together, they are the same option twice. */
const ALIASES: Record<string, string> = { 'control-url': 'server' };

/** A UsageError for the first single-value option given more than once (its values are not echoed: one may be a token). */
function refuseRepeated(command: string, tokens: NonNullable<ReturnType<typeof parseArgs>['tokens']>, options: Options): void {
  const seen = new Map<string, string>();
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const o = options[t.name];
    if (!o || o.type !== 'string' || o.multiple) continue;
    const key = ALIASES[t.name] ?? t.name;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, t.rawName);
      continue;
    }
    throw new UsageError(command, first === t.rawName ? `${t.rawName} is given more than once; give it once` : `${first} and ${t.rawName} are the same option; give one of them once`);
  }
}

/**
 * `--opt -5` as `--opt=-5`: parseArgs calls a value starting with a dash ambiguous, so a negative
 * number given to a string option would be refused as such rather than by the option's own check
 * ("must be ... from 1 to ..."). No option is a dash and a digit, so nothing else is meant by it.
 */
function negativeValuesJoined(argv: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return out.concat(argv.slice(i));
    const long = arg.startsWith('--') ? options[arg.slice(2)] : undefined;
    const next = argv[i + 1];
    if (long?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** Parses `[host:]port` (host defaults to 127.0.0.1) through protocol/host-port.ts. */
export function parseHostPort(command: string, what: string, s: string, opts: { allowZero?: boolean } = {}): HostPort {
  const hp = parseAddress(s, { defaultHost: '127.0.0.1', allowZero: opts.allowZero ?? false });
  if (!hp) throw new UsageError(command, `${what} must be [host:]port with a port from ${opts.allowZero ? 0 : 1} to 65535, got "${s}"`);
  return hp;
}

/** `--ttl SECS`: a lease lifetime to ask for (the server caps it). */
export function parseTtl(command: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,8}$/.test(v) || Number(v) < 30) throw new UsageError(command, `--ttl must be whole seconds, at least 30, got "${v}"`);
  return Number(v);
}
