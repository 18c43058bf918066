import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { PROBLEM_CONTENT_TYPE, type ErrorCode } from '../../protocol/error-codes.js';
import type { Problem } from '../../protocol/problem.js';
import { problemBody } from './problem.js';
import { ALWAYS, DEFAULTS } from './security-headers.js';

/**
 * Requests Node's HTTP server refuses before the app sees them, answered as this API's
 * problem+json. Without it Node wrote a bare status line with no body and no content type: 431
 * for a request line and headers over its limit (a 100 KB token), 400 for a NUL or a byte over
 * 0x7f in a header or the path, 408 for a request that did not arrive in time (`clientError`),
 * 417 for an Expect other than 100-continue (`checkExpectation`); and a CONNECT got no answer at
 * all, the connection was just dropped (`connect`): now 405.
 *
 * The app's answers to the requests before the bad one on the same connection (pipelined) are
 * written first (Node's own answer cut them off), then the refusal, then the connection is closed;
 * not at once, as Node did: what the client was still sending (the rest of a 100 KB header) would
 * then be unread, the kernel would reset the connection, and the client could lose the answer
 * before reading it. The rest is read and dropped for at most LINGER_MS (the parser reports each
 * piece as another error, ignored here). Nothing is logged: a client can send these as fast as it
 * likes.
 */
export function answerMalformedRequests(server: Server, requestId: () => string): void {
  const answered = new WeakSet<Duplex>();
  const answer = (socket: Duplex, code: ErrorCode, detail: string) => {
    answered.add(socket);
    const problem = problemBody(code, detail, requestId());
    const head = Object.entries(problemHeaders(problem)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.end(`HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? ''}\r\n${head}\r\n${JSON.stringify(problem)}`);
    const linger = setTimeout(() => socket.destroy(), LINGER_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  };
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (answered.has(socket)) return;
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    answered.add(socket);
    afterAnswersInFlight(socket, () => answer(socket, ...refusal(err.code)));
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy()); // Node took its own listener off for CONNECT
    socket.resume(); // read and drop what follows, as after a parse error
    // After the answers to requests pipelined before it, as for a parse error.
    afterAnswersInFlight(socket, () => answer(socket, 'METHOD_NOT_ALLOWED', 'CONNECT is not served here: this is not a proxy'));
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const expect = (req.headers.expect ?? '').slice(0, 64);
    const problem = problemBody('EXPECTATION_FAILED', `Expect "${expect}" cannot be met: only 100-continue is understood`, requestId());
    res.writeHead(problem.status, problemHeaders(problem)).end(JSON.stringify(problem));
  });
}

/**
 * Calls `then` once every request pipelined before the bad one has been answered (Node's own
 * answer cut them off), if the socket is still writable then. Several may be: when the one on the
 * socket finishes, Node hands the socket to the next one queued (and it may still be computing
 * its answer), so this waits again for that one, until none is left.
 */
function afterAnswersInFlight(socket: Duplex, then: () => void): void {
  // Node takes a response off its socket when the response emits 'finish' (and hands the
  // socket to the next one queued), so one still on it has not: wait for that, even when it has
  // already written everything (writableFinished is then true before 'finish' is emitted).
  const inFlight = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (inFlight) {
    inFlight.once('finish', () => afterAnswersInFlight(socket, then));
    return;
  }
  if (socket.writable) then();
}

/** The headers of a problem answered outside the app: those every answer of the app carries, and connection: close. */
function problemHeaders(problem: Problem): Record<string, string> {
  return {
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(JSON.stringify(problem))),
    'cache-control': 'no-store',
    'x-request-id': problem.request_id,
    ...ALWAYS,
    ...DEFAULTS,
    connection: 'close',
  };
}

/** How long a refused connection is still read (and what comes dropped) after the answer. */
const LINGER_MS = 2000;

function refusal(parserCode: string | undefined): [ErrorCode, string] {
  switch (parserCode) {
    case 'HPE_HEADER_OVERFLOW':
      return ['HEADERS_TOO_LARGE', `the request line and headers exceed ${maxHeaderSize} bytes`];
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return ['PAYLOAD_TOO_LARGE', 'the chunk extensions of the request body are too large'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return ['REQUEST_TIMEOUT', 'the request did not arrive in time'];
    default:
      // The parser's code (HPE_INVALID_HEADER_TOKEN, ...) names what was wrong; it is ASCII.
      return ['BAD_REQUEST', `the request is not valid HTTP/1.1${parserCode && /^[A-Z_]{1,64}$/.test(parserCode) ? ` (${parserCode})` : ''}`];
  }
}
