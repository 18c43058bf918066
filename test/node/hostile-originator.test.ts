/**
 * The originator address and port of Y's `direct-tcpip` open are Y's text: up to a packet of it,
 * NULs, a false address. X must be told where the connection really comes from (Y's TCP peer
 * address and port, as OpenSSH's sshd names the client of a -R listener), and must never get
 * Y's text (OpenSSH as X refused the channel for either claim below). The real relay process, an ssh2 X
 * and an OpenSSH X (`ssh -R`), and Y from 127.0.0.2.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Client, ClientChannel, TcpipRequestInfo } from 'ssh2';
import { mintLease } from '../harness/relay.js';
import { startHostileRelay, type HostileRelay } from './hostile-relay.js';
import { clientFiles, spawnSsh, sshArgs, startEchoService, writeCert } from './ssh-tools.js';

const Y_ADDRESS = '127.0.0.2';
/** What Y claims as its originator: 30 KB, and a NUL in an address. */
const CLAIMS: [string, number][] = [
  ['A'.repeat(30_000), 1],
  ['198.51.100.1\0evil', 22],
];

describe('hostile: the originator X is told', { timeout: 120_000 }, () => {
  let h: HostileRelay;
  before(async () => {
    h = await startHostileRelay();
  });
  after(async () => {
    await h.stop();
  });

  /** Y from Y_ADDRESS, with its address and port as the relay's log names them. */
  async function y(user: string, exposure: string): Promise<{ client: Client; remote: string }> {
    const from = h.relay.stderr().length;
    const { client } = await h.client(user, { kind: 'open', exposure }, { localAddress: Y_ADDRESS });
    await h.relay.waitForStderr(new RegExp(`"msg":"connection authenticated"[^\\n]*"user":"${user}"`), from);
    const remote = h.logs(from).find((l) => l.msg === 'connection authenticated' && l.user === user)?.remote;
    assert.equal(typeof remote, 'string');
    assert.ok((remote as string).startsWith(`${Y_ADDRESS}:`), String(remote));
    return { client, remote: remote as string };
  }

  const open = (c: Client, addr: string, port: number, exposure: string) =>
    new Promise<ClientChannel>((resolve, reject) => c.forwardOut(addr, port, exposure, 22, (err, ch) => (err ? reject(err) : resolve(ch))));

  it("an ssh2 X gets Y's own address and port, not the 30 KB or NUL-bearing one Y claims", async () => {
    const exposure = 'origin-ssh2';
    const x = await h.client('xorigin', { kind: 'expose', exposure, port: 22 });
    const seen: TcpipRequestInfo[] = [];
    x.client.on('tcp connection', (info, accept) => {
      seen.push(info);
      accept().end();
    });
    await new Promise<void>((resolve, reject) => x.client.forwardIn(exposure, 22, (err) => (err ? reject(err) : resolve())));
    const { client, remote } = await y('yorigin', exposure);
    // Y's channel is confirmed only once X has opened its side: X's 'tcp connection' came first.
    for (const [addr, port] of CLAIMS) (await open(client, addr, port, exposure)).close();
    assert.deepEqual(
      seen.map((i) => `${i.srcIP}:${i.srcPort}`),
      CLAIMS.map(() => remote),
    );
  });

  it('OpenSSH as X (ssh -R) takes the channel and logs where it really comes from', async () => {
    const exposure = 'origin-openssh';
    const service = await startEchoService('x');
    try {
      const files = await clientFiles(h.relay.sshPort, h.hostKeyLine);
      const lease = await mintLease(h.fc, { grant: { kind: 'expose', exposure, port: 22 }, clientPublicKey: files.privateKey, user: 'xopenssh' });
      await writeCert(files, lease.certificate);
      const x = spawnSsh(sshArgs(files, h.relay.sshPort, 'xopenssh', { extra: ['-v', '-N', '-o', 'ExitOnForwardFailure=yes', '-R', `${exposure}:22:127.0.0.1:${service.port}`] }));
      await x.waitStderr(/remote forward success/);
      const { client, remote } = await y('yopenssh', exposure);
      const [addr, port] = remote.split(':') as [string, string];
      for (const [i, [claimAddr, claimPort]] of CLAIMS.entries()) {
        const ch = await open(client, claimAddr, claimPort, exposure);
        const reply = new Promise<string>((resolve, reject) => {
          ch.once('data', (d: Buffer) => resolve(d.toString()));
          ch.once('close', () => reject(new Error(`channel ${i} closed without a reply; X: ${x.stderr()}`)));
        });
        ch.write(`ping${i}`);
        assert.equal(await reply, `x:ping${i}`);
        ch.close();
      }
      assert.equal(x.child.exitCode, null, 'X is still connected');
      const originators = [...x.stderr().matchAll(/originator (.*?) port (\d+)/g)].map((m) => `${m[1]}:${m[2]}`);
      assert.deepEqual(originators, CLAIMS.map(() => `${addr}:${port}`));
      x.child.kill();
      await x.exited;
    } finally {
      service.server.close();
    }
  });
});
