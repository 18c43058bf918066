// Tiny TCP services for the lab, run inside a namespace with `ip netns exec`.
//   node service.mjs banner ADDR PORT TEXT [--peer]   writes "TEXT\n" (or "TEXT PEER_ADDR\n") and closes
//   node service.mjs echo ADDR PORT                   echoes every byte back
// Prints "listening ADDR:PORT" on stdout once bound, so callers can await readiness.
import { createServer } from 'node:net';

const [mode, host, portText, text, flag] = process.argv.slice(2);
const port = Number(portText);
if (!host || !Number.isInteger(port) || (mode === 'banner' ? !text : mode !== 'echo')) {
  console.error('usage: service.mjs banner ADDR PORT TEXT [--peer] | echo ADDR PORT');
  process.exit(2);
}

const server = createServer((sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => sock.destroy());
  if (mode === 'echo') {
    sock.pipe(sock);
    return;
  }
  sock.end(flag === '--peer' ? `${text} ${sock.remoteAddress}\n` : `${text}\n`);
});
server.on('error', (err) => {
  console.error(`service: ${err.message}`);
  process.exit(1);
});
server.listen({ host, port }, () => console.log(`listening ${host}:${port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
