import { parseArgs, type ParseArgsConfig } from 'node:util';

/**
 * A bench's command line: `parseArgs` with `--help` (prints `usage`, exits 0) and a one-line
 * error with the usage and exit 2 for an unknown or malformed option, instead of a stack trace.
 */
export function parseBenchArgs<const O extends NonNullable<ParseArgsConfig['options']>>(
  options: O,
  usage: string,
  args: string[] = process.argv.slice(2),
): ReturnType<typeof parseArgs<{ options: O; args: string[] }>>['values'] {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage.endsWith('\n') ? usage : `${usage}\n`);
    process.exit(0);
  }
  try {
    return parseArgs({ options, args }).values;
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${usage.endsWith('\n') ? usage : `${usage}\n`}`);
    process.exit(2);
  }
}
