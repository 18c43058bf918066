import { createInterface } from 'node:readline';
import type { Context } from './context.js';
import { CliError, EXIT } from './errors.js';

/**
 * Reads one line: from a terminal with a prompt (and without echo when `secret`), or the first
 * line of piped standard input.
 */
export async function readLine(ctx: Context, prompt: string, secret: boolean): Promise<string> {
  const input = ctx.stdin;
  if (input.isTTY) {
    ctx.stderr.write(prompt);
    // Without an output stream readline does not echo what is typed.
    const rl = createInterface({ input, terminal: true, output: secret ? undefined : ctx.stderr });
    const line = await new Promise<string>((resolve) => rl.once('line', resolve));
    rl.close();
    if (secret) ctx.stderr.write('\n');
    return line;
  }
  const rl = createInterface({ input });
  const line = await new Promise<string | undefined>((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(undefined));
  });
  rl.close();
  if (line === undefined) throw new CliError(EXIT.USAGE, `${prompt.replace(/:\s*$/, '')} expected on standard input`);
  return line;
}
