/**
 * The child side of delay-line-process.ts: runs one delay line (delay-line.ts) and answers the
 * parent over the IPC channel. Exits when the parent says close or goes away.
 */
import { startDelayLine } from './delay-line.js';
import type { ToChild, FromChild } from './delay-line-process.js';

const send = (m: FromChild) => process.send?.(m);

async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2] ?? '{}') as { targetPort: number; oneWayMs: number; maxQueuedBytes?: number };
  const line = await startDelayLine(o);
  const close = async () => {
    await line.close();
    process.exit(0);
  };
  process.on('message', (m: ToChild) => {
    if (m.type === 'set') {
      line.setOneWayMs(m.ms);
      send({ type: 'done', id: m.id, connections: line.connections(), peakQueuedBytes: line.peakQueuedBytes() });
    } else if (m.type === 'stats') {
      send({ type: 'done', id: m.id, connections: line.connections(), peakQueuedBytes: line.peakQueuedBytes() });
    } else if (m.type === 'close') {
      void close();
    }
  });
  process.once('disconnect', () => void close());
  send({ type: 'ready', port: line.port });
}

main().catch((err: unknown) => {
  process.stderr.write(`delay line: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
