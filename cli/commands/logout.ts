import { join } from 'node:path';
import { readProblem } from '../../protocol/problem.js';
import { exitCodeFor, type RawResponse } from '../api-client.js';
import { Session } from '../session.js';
import { parseCommand } from '../args.js';
import { info, type Context } from '../context.js';
import { CliError, EXIT } from '../errors.js';
import { configDir, deleteCredentials, readCredentials, type Credentials } from '../settings.js';
import type { Command } from './command.js';

export const logout: Command = {
  name: 'logout',
  summary: 'end the login session and delete the stored credentials',
  usage: `Usage: tunnel logout

Ends the login session on the control plane and deletes the stored credentials. The leases this
login got end with it: a tunnel expose or tunnel open running on it loses its connection and
stops (exit code 3), and certificates from tunnel cert stop working. An access token that has
expired is renewed first with the stored refresh token, so the session still ends.

When the control plane cannot end the session (unreachable, or an error), nothing is deleted:
it says so and exits non-zero (5: unreachable; 130: stopped by Ctrl-C before it answered), and
tunnel logout can be run again. A login with
a service token (tunnel login --token-file) has no session: only the stored credentials go, and
the service token stays valid until it expires or is revoked (tunnel admin service-tokens revoke).

Example:
  tunnel logout`,
  async run(ctx, argv) {
    parseCommand('logout', argv, {});
    const creds = readCredentials(ctx);
    if (!creds) {
      info(ctx, 'Not logged in.');
      return 0;
    }
    if (creds.service_token) {
      deleteCredentials(ctx);
      info(ctx, 'Deleted the stored service-token login; the service token itself stays valid until it expires or is revoked.');
      return 0;
    }
    const outcome = await endSession(ctx, creds).catch((err: unknown) => {
      if (!(err instanceof CliError)) throw err;
      throw new CliError(err.exitCode, `${err.message}; the control plane did not confirm that the login session ended, so the credentials are kept (run tunnel logout again, or delete ${credentialsPath(ctx)} to forget them)`, {
        code: err.code,
        cause: err,
      });
    });
    deleteCredentials(ctx);
    info(ctx, outcome === 'ended' ? 'Logged out.' : 'The login session had already ended (logged out elsewhere, revoked or expired); deleted the stored credentials.');
    return 0;
  },
};

/**
 * Ends the stored login's session on the control plane: POST /v1/auth/logout with the access
 * token and the refresh token (the server revokes the refresh-token family and the leases issued
 * through it). An access token the server refuses (expired) is renewed with the refresh token
 * first; a refresh token the server refuses means the session had already ended ('ended
 * before'). Anything else throws: the session may still stand.
 */
async function endSession(ctx: Context, creds: Credentials): Promise<'ended' | 'ended before'> {
  const session = Session.load(ctx, creds.server);
  const logoutWith = (accessToken: string, refresh: string | undefined) =>
    session.api.raw('POST', '/v1/auth/logout', { token: accessToken, body: refresh ? { refresh_token: refresh } : {}, signal: ctx.stopSignal });
  let res = await logoutWith(creds.access_token, creds.refresh_token);
  if (res.status === 204) return 'ended';
  if (res.status !== 401 || !creds.refresh_token) throw failed(res);
  // The access token is no longer accepted (expired, or its session ended): the refresh token
  // gets a fresh one (Session stores it, so a retry after a lost answer presents the current
  // refresh token), or is refused because the session has ended.
  let accessToken: string;
  try {
    accessToken = await session.token(true, ctx.stopSignal);
  } catch (err) {
    if (err instanceof CliError && err.exitCode === EXIT.NOT_LOGGED_IN) return 'ended before';
    throw err;
  }
  res = await logoutWith(accessToken, session.refreshToken);
  if (res.status === 204) return 'ended';
  throw failed(res);
}

function failed(res: RawResponse): CliError {
  const p = readProblem(res.status, res.body);
  return new CliError(exitCodeFor(p.code, res.status), `the control plane answered ${res.status}${p.code ? ` ${p.code}` : ''}: ${p.detail}`, { code: p.code });
}

function credentialsPath(ctx: Context): string {
  return join(configDir(ctx), 'credentials.json');
}
