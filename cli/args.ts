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

/** parseArgs with the common options, turning its errors into a UsageError for `command`. */
export function parseCommand<O extends Options>(command: string, argv: string[], options: O) {
  try {
    const all: Options = { ...COMMON_OPTIONS, ...options };
    const r = parseArgs({ args: negativeValuesJoined(argv, all), options: all, allowPositionals: true, strict: true });
    const v = r.values as Record<string, unknown>;
    return {
      values: r.values as { [K in keyof (O & typeof COMMON_OPTIONS)]?: (O & typeof COMMON_OPTIONS)[K] extends { type: 'boolean' } ? boolean : (O & typeof COMMON_OPTIONS)[K] extends { multiple: true } ? string[] : string },
      positionals: r.positionals,
      server: (v.server ?? v['control-url']) as string | undefined,
      json: v.json === true,
      help: v.help === true,
    };
  } catch (err) {
    throw new UsageError(command, (err as Error).message.split('\n')[0]!);
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
