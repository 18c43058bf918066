import type { Context } from './context.js';
import { info, out } from './context.js';
import { CliError, EXIT, UsageError } from './errors.js';
import { peerText } from './terminal-text.js';
import type { Command } from './commands/command.js';
import { API_LEVEL, TUNNEL_VERSION } from '../protocol/api-level.js';
import { login } from './commands/login.js';
import { logout } from './commands/logout.js';
import { whoami } from './commands/whoami.js';
import { expose } from './commands/expose.js';
import { open } from './commands/open.js';
import { sshConfig } from './commands/ssh-config.js';
import { cert } from './commands/cert.js';
import { ls } from './commands/ls.js';
import { leases } from './commands/leases.js';
import { nodes } from './commands/nodes.js';
import { admin } from './commands/admin.js';
import { exposures } from './commands/exposures.js';

export const COMMANDS: Command[] = [login, logout, whoami, expose, open, sshConfig, cert, ls, exposures, leases, nodes, admin];

export const USAGE = `Usage: tunnel <command> [options]

Reach a TCP service behind NAT through a Tunnel relay, with short-lived certificates.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(11)} ${c.summary}`).join('\n')}

Every command takes --help and, where it prints data, --json. tunnel login takes --server URL (or
TUNNEL_SERVER) and stores it; the other commands use the stored login, and --server URL on them
only checks that the login is to that server (exit 3 when not).
Exit codes: 0 ok, 1 error, 2 usage, 3 not logged in, 4 not permitted, 5 control plane or relay unreachable,
130 stopped (Ctrl-C, SIGTERM) before done; tunnel open also: 6 exposure offline, 7 the service behind it
unreachable, 8 nothing exposed on that port. A stop ends tunnel expose and tunnel open --listen with 0.

Example (X behind NAT exposes its sshd; Y reaches it):
  X$ tunnel login --server https://tunnel.example.com && tunnel expose 22 --name hostx-ssh --allow alice
  Y$ tunnel login --server https://tunnel.example.com && ssh -o ProxyCommand='tunnel open --stdio %h' me@hostx-ssh
`;

/** The longest error line printed (a message quoting a long argument is cut there). */
const MAX_ERROR_LINE = 2048;

/** argv → command → exit code. Only main.ts exits the process. */
export async function run(argv: string[], ctx: Context): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    const target = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    out(ctx, target ? target.usage : USAGE);
    return name ? 0 : EXIT.USAGE;
  }
  if (name === '--version' || name === 'version') {
    out(ctx, `tunnel ${TUNNEL_VERSION} (API level ${API_LEVEL})`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    info(ctx, `tunnel: unknown command "${peerText(name, 80)}"; see tunnel --help`);
    return EXIT.USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    out(ctx, cmd.usage);
    return 0;
  }
  try {
    return await cmd.run(ctx, rest);
  } catch (err) {
    // One line, whatever the message quotes (a name or address as typed, with its line breaks
    // or escape sequences): control characters as '?'.
    if (err instanceof UsageError) {
      info(ctx, `tunnel ${err.command}: ${peerText(err.message, MAX_ERROR_LINE)} (see tunnel ${err.command} --help)`);
      return EXIT.USAGE;
    }
    if (err instanceof CliError) {
      info(ctx, `tunnel ${name}: ${peerText(err.message, MAX_ERROR_LINE)}`);
      return err.exitCode;
    }
    info(ctx, `tunnel ${name}: internal error, please report: ${(err as Error)?.stack ?? String(err)}`);
    return EXIT.ERROR;
  }
}
