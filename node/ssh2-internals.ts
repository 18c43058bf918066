/**
 * The few ssh2 1.17 internals the relay and the CLI depend on, listed in one place so an upgrade
 * has one list to check; the code is in node/ssh2-internals/, one file per area, each use
 * explained where ssh2's public API falls short:
 * - protocol.ts: the Protocol's handler table, packet writer and sender, a connection's channels
 *   (shared by the files below, not exported from here)
 * - modules.ts: ssh2's Server, key parser and crypto binding, required from their own files
 * - global-requests.ts, channel-opens.ts, channel-requests.ts: hooks on incoming requests and opens
 * - answers.ts: the Protocol methods through which ssh2 answers the peer on its own (cli/ssh/answer-bound.ts)
 * - channel-limits.ts: data past the window, too small a maximum packet size
 * - channel-window.ts: a channel's receive window (node/adaptive-window.ts), and whether its push joins small chunks (node/parked-chunks.ts)
 * - channel-send-window.ts: a channel's send window and the peer's WINDOW_ADJUSTs (node/forwarding/bridge.ts)
 * - channel-close.ts: the peer's CHANNEL_CLOSE, before ssh2's 'close' (node/forwarding/bridge.ts)
 * - initial-window.ts: the window a channel opens with (node/channel-memory.ts)
 * - ext-info.ts, disconnect.ts: packets ssh2 sends wrongly or without a text
 * - key-exchange-queue.ts: what ssh2 holds for the peer during a key exchange
 * - key-exchange-secrets.ts: the key pair and shared secret ssh2 keeps after a key exchange
 * - ping-times.ts: round trips of the server's keepalive pings (node/path-rtt.ts)
 * - pooled-padding.ts, host-key.ts: per-packet and per-key-exchange crypto costs
 * - channel-data-in-place.ts: CHANNEL_DATA packets built around data read in place (cli/ssh/packet-reads.ts)
 * - connection-fields.ts: the sockets and peer version ssh2 keeps on its objects
 * - channel-destroy.ts: an unused error built for every channel that closes
 *
 * An ssh2 upgrade must re-check (each wrapper throws "ssh2 internals changed" at connection
 * time if a name is gone, and test/interop fails if a behaviour changed):
 * - `Connection._protocol._handlers.{GLOBAL_REQUEST, CHANNEL_OPEN, CHANNEL_REQUEST}` keep their
 *   signatures, and lib/server.js still answers a CHANNEL_REQUEST on a plain channel with
 *   CHANNEL_FAILURE even after it sent CHANNEL_CLOSE (if fixed, dropRequestsAfterClose is moot).
 * - `Connection._chanMgr.get(id)` returns the Channel, whose `outgoing.state` goes
 *   open → eof → closing (CLOSE sent) → closed.
 * - `_handlers.{CHANNEL_DATA, CHANNEL_EXTENDED_DATA}` (server and client) are still called with
 *   `(p, recipient, data, ...)` and still accept a packet past the window (if ssh2 now refuses
 *   it, that half of enforceChannelLimits is moot); `_handlers.{CHANNEL_OPEN,
 *   CHANNEL_OPEN_CONFIRMATION}` get an info object with the peer's `packetSize`, and
 *   lib/Channel.js `_write` still slices by it (enforceChannelLimits).
 * - lib/protocol/kex.js calls `protocol._onHandshakeComplete` through the instance property,
 *   and Protocol.js reads `_kex.remoteExtInfoEnabled` inside it to send its own EXT_INFO (still
 *   with the comma missing in `server-sig-algs`?); `_packetRW.write.{allocStart, alloc,
 *   finalize}` and lib/protocol/utils.js `sendPacket` are unchanged; server.js's socket 'data'
 *   listener still calls `proto.parse` on the instance for every chunk (ignorePeer: nothing a
 *   peer sends after the relay's DISCONNECT is parsed).
 * - The `algorithms` names in node/ssh-algorithms.ts are still supported (ssh2 throws at start
 *   if not), the server still appends `kex-strict-s-v00@openssh.com`, group exchange is still
 *   unimplemented on the server side, and the zlib inflater is still unbounded (see COMPRESSION).
 * - `Connection._sock` and `lib/protocol/crypto.js` `bindingAvailable`.
 * - Send-buffer accounting (keyExchangeQueue, node/send-budget.ts, cli/ssh/send-backpressure.ts): `Protocol._queue` is still
 *   the only place ssh2 holds outbound packets (during a key exchange), server.js `onWrite`
 *   still writes straight to the injected socket, `Channel#_write` still calls back once the
 *   peer's window allows (not once the socket took the bytes), and the server still emits
 *   `handshake` after flushing the queue.
 * - Send windows (channelSendWindow, node/forwarding/bridge.ts): a Channel still has
 *   `outgoing.window` (what the peer's window takes) and `_client`, `Channel#_write` still writes
 *   at once and calls back when the data fits the window, and the CHANNEL_WINDOW_ADJUST handlers
 *   (client.js, server.js) still add `amount` to `outgoing.window` and are still called through
 *   `_handlers` with `(p, recipient, amount)` (test/node/send-bound-windows: the send bound
 *   holds when a peer opens many windows at once, and every byte arrives).
 * - Peer CLOSE (onPeerClose, node/forwarding/bridge.ts): the CHANNEL_CLOSE handlers (client.js,
 *   server.js) are still called through `_handlers` with `(p, recipient)`, lib/utils.js
 *   `onCHANNEL_CLOSE` still sets `incoming.state` to 'closed', answers with CLOSE and removes the
 *   channel from `_chanMgr`, and still emits 'close' only after the readable side's 'end'
 *   (test/node/relay-closed-while-stalled).
 * - Initial windows (acceptWithWindow, forwardOutWithWindow; node/channel-memory.ts): a
 *   direct-tcpip `accept()` in lib/server.js still builds the Channel and then calls
 *   `_protocol.channelOpenConfirm(remote, local, window, packetSize)` synchronously, `forwardOut`
 *   still calls `_protocol.forwardedTcpip(local, window, packetSize, info)` synchronously, and the
 *   CHANNEL_OPEN_CONFIRMATION handler still calls forwardOut's callback synchronously with the
 *   Channel it built (test: node/channel-memory.test, test/node/hostile-channel-memory.test).
 * - Adaptive windows (channelWindow, node/adaptive-window.ts): lib/Channel.js `MAX_WINDOW` is
 *   still 2 MiB and a Channel's readable high-water mark; a Channel still has `incoming.window`,
 *   `outgoing.{id, state}` and `_client._protocol.channelWindowAdjust(id, n)`; the CHANNEL_DATA
 *   handlers (client.js and server.js) still decrement `incoming.window`, then call
 *   `channel.push(data)`, then top up only when the window is at or below half of MAX_WINDOW
 *   and push() returned true (false sets `_waitChanDrain` instead, which is how a hooked channel
 *   turns ssh2's own top-ups off); `Channel#_read` still tops up only when `_waitChanDrain` is
 *   set, and is still called through the instance property. (`ClientStderr#_read` does the same
 *   for the main channel's flag: a client channel whose stderr is read gets ssh2's top-ups back;
 *   Tunnel adopts only tcpip channels and never reads their stderr.)
 * - Joined small chunks (pushJoined, waitingChunks; hooked channels): Node's Readable still keeps
 *   waiting chunks in `_readableState.buffer` (an array read from `bufferIndex`, or a BufferList
 *   with `tail.data`) and `_readableState.length`, and an empty push still only clears `reading`,
 *   reads more if it may and answers as a push does; an unknown shape pushes each chunk as it is,
 *   and then the bridge copies small chunks that wait itself (joinsSmallChunks; node/small-chunks.test.ts
 *   checks the joining on the running Node; node/forwarding/bridge.test.ts, test/node/hostile-small-chunks).
 * - Pooled padding (installPooledPadding): lib/protocol/crypto.js still exports CIPHER_INFO, MAC_INFO
 *   and createCipher, its outbound cipher classes are still the six in CIPHER_SHAPES, and each
 *   `allocPacket` still computes the padding as written there (node/ssh2-internals.test.ts
 *   compares every class against ssh2's own).
 * - Pooled packet memory (takeInPlacePacketsFrom, node/packet-pool.ts): the binding's cipher
 *   classes (AESGCMCipherBinding, ChaChaPolyCipherBinding, GenericCipherBinding) still encrypt
 *   the packet `allocPacket` gave in place and hand that same Buffer to `onWrite`, ssh2 keeps no
 *   reference to it afterwards, and server.js `onWrite` still calls `socket.write(data)` with no
 *   callback (the relay gives the buffer back to its pool when that write completes;
 *   test/node/relay-forwarding and test/interop move data byte-exactly through it).
 * - In-place channel data (channelDataInPlace): a Channel still has `outgoing.{id, window,
 *   packetSize, state}` and `Channel#_write` still slices by `packetSize` and takes the window
 *   from `outgoing.window`; outside a key exchange `_packetRW.write` is still the plain
 *   `PacketWriter` (`allocStart` 5, `finalize` returns the packet), a key exchange still sets
 *   `_kexinit` and `allocStart` 0 and queues bare payloads, and `sendPacket` still encrypts through
 *   `_cipher` (cli/ssh/packet-reads.test.ts runs every cipher class and re-keys mid-stream).
 * - Peer FIN (node/connection.ts): server.js still emits 'end' on the Connection at its socket's
 *   'end', and its onWrite still drops every write once the socket's readable side ended
 *   (test/node/relay-peer-fin).
 * - client.js still keeps the server's identification software version in `Client#_remoteVer`.
 * - Ping round trips (timePings, node/path-rtt.ts): server.js's keepalive still sends its pings
 *   through `proto.ping()` on the instance and sends no other global request, and still sets no
 *   `REQUEST_SUCCESS`/`REQUEST_FAILURE` handler (timePings throws if one appears).
 * - Answers (routeAnswers, cli/ssh/answer-bound.ts): client.js still answers through
 *   `Protocol#{requestSuccess, requestFailure, channelSuccess, channelFailure, channelOpenFail,
 *   openssh_hostKeysProve}` called on the instance (`proto.x()`, `p.x()`, `_protocol.x()`), each
 *   still writes one packet through `sendPacket`, and no other path answers the peer (a new
 *   automatic answer would go uncounted; cli/ssh/hostile-relay.test.ts floods global requests,
 *   channel requests and refused channel opens).
 * - node/startup-memory.ts: lib/protocol/crypto/poly1305.js is still only used by the pure-JS
 *   ChaChaPoly*Native classes (chosen only without the binding), `crypto.js` still requires it
 *   inside `init` and awaits the Emscripten factory, and cpu-features is still only read by
 *   lib/protocol/constants.js to order the default cipher list.
 * - Host key: lib/protocol/kex.js still signs the exchange hash with `hostKey.sign(data, algo)`
 *   on the object `utils.parseKey` returned, and server.js takes an already parsed key as is
 *   (`parseKey` returns a parsed key unchanged); see hostKeyWithKeyObject.
 * - Quiet channel destroy (installQuietChannelDestroy): lib/Channel.js still exports `Channel`
 *   whose own `destroy()` is `end(); close(); return this` (node/channel-destroy.test.ts checks
 *   that EOF and CLOSE still go out for a channel destroyed before it ended).
 * - Fast X25519 (useFastX25519): lib/protocol/kex.js's Curve25519Exchange still keeps its key
 *   pair in `_keys` (made by `generateKeys()`), still asks `getPublicKey()` for its raw 32-byte
 *   public key and `computeSecret(raw peer key)` for the mpint secret or an Error, and the
 *   Protocol still keeps `_kex` after the handshake (node/ssh2-internals.test.ts checks the
 *   replacement happens and that both sides of a handshake agree with ssh2's own methods).
 * - Key exchange secrets (forgetKeyExchangeSecrets): lib/protocol/kex.js still keeps the finished
 *   exchange as `Protocol._kex` until the next KEXINIT replaces it, and after its 'handshake'
 *   reads only its `sessionID` (the next exchange's, userauth signatures, hostkeys-prove),
 *   `negotiated` and `remoteExtInfoEnabled`, and whether `_kex` is set (a re-key); never calls
 *   `generateKeys`, `computeSecret` or `finish` on it again; a curve25519 exchange still holds
 *   its x25519 key pair as `_keys` (and the DH/ECDH ones theirs as `_dh`, which kex.js clears
 *   itself); the server (and a client whose host key check answered after NEWKEYS) still
 *   replaces `finish` with `completeHandshake`, the closure over the shared secret; both sides
 *   still emit 'handshake' last (node/ssh2-internals.test.ts re-keys from both ends after it and
 *   sees the key pairs and closures collected; cli/ssh/packet-reads.test.ts and
 *   test/node/hostile-members re-key mid-stream; test/interop runs OpenSSH against the relay).
 *   Measured on an ssh2 server with the relay's algorithms and 2,000 idle connections, three
 *   runs each way: 0.37-0.45 KB of V8 heap and 1.2-2 KB of RSS (noisy) less per connection (the
 *   KeyObjects' OpenSSL keys are outside the heap).
 * - Auth: server.js still keeps one `_authsQueue` for pipelined USERAUTH_REQUESTs, and
 *   `PKAuthContext#accept` still throws when it is out of step (test/node/hostile-auth shows
 *   the relay closes that connection instead of crashing).
 */

export { channelConnection, channelSocket, clientSocket, remoteSoftware, socketOf } from './ssh2-internals/connection-fields.js';
export { nativeCryptoAvailable, Ssh2Server } from './ssh2-internals/modules.js';
export { CUSTOM_REQUEST, customRequestOf, routeCustomGlobalRequests, type CustomRequestData } from './ssh2-internals/global-requests.js';
export { observeChannelOpens, OPEN_FAILURE, rejectChannelOpen } from './ssh2-internals/channel-opens.js';
export { dropRequestsAfterClose } from './ssh2-internals/channel-requests.js';
export { ANSWER_METHODS, routeAnswers, type AnswerMethod } from './ssh2-internals/answers.js';
export { enforceChannelLimits, MIN_CHANNEL_PACKET, type ChannelLimitViolation } from './ssh2-internals/channel-limits.js';
export { channelWindow, joinsSmallChunks, STANDARD_WINDOW, type ChannelWindow } from './ssh2-internals/channel-window.js';
export { JOINED_MAX, joinsSmallChunksOf, pushJoined, SMALL_CHUNK, waitingChunks } from './ssh2-internals/small-chunks.js';
export { channelSendWindow, type SendWindow } from './ssh2-internals/channel-send-window.js';
export { onPeerClose } from './ssh2-internals/channel-close.js';
export { acceptWithWindow, forwardOutWithWindow, setIncomingWindow } from './ssh2-internals/initial-window.js';
export { sendServerSigAlgs } from './ssh2-internals/ext-info.js';
export { DISCONNECT, disconnectWithReason, ignorePeer } from './ssh2-internals/disconnect.js';
export { keyExchangeQueue } from './ssh2-internals/key-exchange-queue.js';
export { forgetKeyExchangeSecrets } from './ssh2-internals/key-exchange-secrets.js';
export { timePings } from './ssh2-internals/ping-times.js';
export { installPooledPadding, ORIGINAL_ALLOC_PACKET, sampleCiphers, takeInPlacePacketsFrom } from './ssh2-internals/pooled-padding.js';
export { hostKeyWithKeyObject } from './ssh2-internals/host-key.js';
export { installQuietChannelDestroy, originalChannelDestroy } from './ssh2-internals/channel-destroy.js';
export { channelDataInPlace, IN_PLACE_HEAD, IN_PLACE_TAIL, type ChannelDataInPlace } from './ssh2-internals/channel-data-in-place.js';
export { originalX25519Methods, useFastX25519 } from './ssh2-internals/x25519-exchange.js';
