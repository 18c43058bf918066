import { ApiClient } from '../api-client.js';
import { parseCommand } from '../args.js';
import { info } from '../context.js';
import { deleteCredentials, readCredentials } from '../settings.js';
import type { Command } from './command.js';

export const logout: Command = {
  name: 'logout',
  summary: 'end the login session and delete the stored credentials',
  usage: `Usage: tunnel logout

Ends the login session on the control plane (when reachable) and deletes the stored
credentials. The leases this login got end with it: a tunnel expose or tunnel open running on
it loses its connection, and certificates from tunnel cert stop working.

Example:
  tunnel logout`,
  async run(ctx, argv) {
    parseCommand('logout', argv, {});
    const creds = readCredentials(ctx);
    let api: ApiClient | undefined;
    try {
      api = creds ? ApiClient.forServer(ctx, creds.server) : undefined;
    } catch {
      api = undefined; // e.g. the stored trust no longer applies: still delete the credentials
    }
    if (creds && api) {
      // Best effort: the local credentials go even when the server cannot be told.
      await api
        .raw('POST', '/v1/auth/logout', {
          token: creds.access_token,
          body: creds.refresh_token ? { refresh_token: creds.refresh_token } : {},
        })
        .catch(() => info(ctx, 'Could not reach the control plane; deleting the local credentials anyway.'));
    }
    info(ctx, deleteCredentials(ctx) ? 'Logged out.' : 'Not logged in.');
    return 0;
  },
};
