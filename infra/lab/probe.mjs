// Tries one TCP connection and prints one JSON line: {"result", "data", "code"?}.
//   node probe.mjs ADDR PORT TIMEOUT_MS [SEND]
// result: reachable | refused | unreachable | timeout | error. When reachable, SEND (if given)
// is written and data holds what arrived until the first newline, the peer's end, or the timeout.
import { connect } from 'node:net';
import { clearTimeout, setTimeout } from 'node:timers';

const [host, portText, timeoutText, send] = process.argv.slice(2);
const port = Number(portText);
const timeoutMs = Number(timeoutText);
if (!host || !Number.isInteger(port) || !Number.isFinite(timeoutMs)) {
  console.error('usage: probe.mjs ADDR PORT TIMEOUT_MS [SEND]');
  process.exit(2);
}

let data = '';
let connected = false;
let done = false;
const finish = (result, code) => {
  if (done) return;
  done = true;
  clearTimeout(timer);
  sock.destroy();
  console.log(JSON.stringify(code ? { result, data, code } : { result, data }));
};
const sock = connect({ host, port });
const timer = setTimeout(() => finish(connected ? 'reachable' : 'timeout'), timeoutMs);
sock.setEncoding('utf8');
sock.on('connect', () => {
  connected = true;
  if (send) sock.write(send);
});
sock.on('data', (chunk) => {
  data += chunk;
  const nl = data.indexOf('\n');
  if (nl >= 0) {
    data = data.slice(0, nl + 1);
    finish('reachable');
  }
});
sock.on('end', () => finish('reachable'));
sock.on('error', (err) => {
  if (connected) return finish('reachable', err.code);
  switch (err.code) {
    case 'ECONNREFUSED':
      return finish('refused', err.code);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return finish('unreachable', err.code);
    case 'ETIMEDOUT':
      return finish('timeout', err.code);
    default:
      return finish('error', err.code);
  }
});
