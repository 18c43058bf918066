#!/usr/bin/python3
"""paramiko (Debian's python3-paramiko) as X or Y against a relay, driven by
test/interop/paramiko.test.ts.

    paramiko_client.py y PORT USER KEY CERT HOSTKEY_B64 NAME
        Y: opens a direct-tcpip channel to NAME:22 and pipes stdin/stdout through it
        (stdin EOF -> channel EOF; exits when the channel closes), like `ssh -W`.
    paramiko_client.py x PORT USER KEY CERT HOSTKEY_B64 NAME TARGET_PORT
        X: asks for a remote forward of NAME:22, prints "forwarding" once the relay accepted
        it, and joins every forwarded channel to 127.0.0.1:TARGET_PORT until stdin closes.

The relay's host key is pinned (HOSTKEY_B64, the base64 of its ssh-ed25519 blob); the client
authenticates with the ed25519 key and its OpenSSH certificate.
"""
import socket
import sys
import threading

import paramiko


def connect(port, user, key_file, cert_file, host_key_b64):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(None)
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=10)
    server_key = transport.get_remote_server_key()
    if server_key.get_name() != "ssh-ed25519" or server_key.get_base64() != host_key_b64:
        raise SystemExit("relay host key does not match the pinned key")
    key = paramiko.Ed25519Key.from_private_key_file(key_file)
    key.load_certificate(cert_file)
    transport.auth_publickey(user, key)
    if not transport.is_authenticated():
        raise SystemExit("authentication failed")
    return transport


def pump(read, write, on_eof):
    """Copies until read returns b"" (EOF), then calls on_eof."""
    try:
        while True:
            data = read(65536)
            if not data:
                break
            write(data)
    finally:
        on_eof()


def join(channel, sock):
    """Joins a channel and a socket in both directions, half-close included."""
    def to_sock_eof():
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    a = threading.Thread(target=pump, args=(channel.recv, sock.sendall, to_sock_eof), daemon=True)
    b = threading.Thread(target=pump, args=(sock.recv, channel.sendall, channel.shutdown_write), daemon=True)
    a.start()
    b.start()
    a.join()
    b.join()
    channel.close()
    sock.close()


def run_y(transport, name):
    channel = transport.open_channel("direct-tcpip", (name, 22), ("127.0.0.1", 0), timeout=10)
    stdin = sys.stdin.buffer.raw
    stdout = sys.stdout.buffer
    feeder = threading.Thread(target=pump, args=(stdin.read, channel.sendall, channel.shutdown_write), daemon=True)
    feeder.start()

    def write_out(data):
        stdout.write(data)
        stdout.flush()

    pump(channel.recv, write_out, lambda: None)
    channel.close()
    transport.close()


def run_x(transport, name, target_port):
    def handler(channel, origin, server):
        sock = socket.create_connection(("127.0.0.1", target_port))
        threading.Thread(target=join, args=(channel, sock), daemon=True).start()

    transport.request_port_forward(name, 22, handler=handler)
    sys.stdout.write("forwarding\n")
    sys.stdout.flush()
    # Runs until the test closes stdin (or the relay closes the connection).
    while sys.stdin.buffer.read(1):
        pass
    transport.close()


def main():
    mode, port, user, key_file, cert_file, host_key_b64, name = sys.argv[1:8]
    transport = connect(int(port), user, key_file, cert_file, host_key_b64)
    if mode == "y":
        run_y(transport, name)
    elif mode == "x":
        run_x(transport, name, int(sys.argv[8]))
    else:
        raise SystemExit("mode must be x or y")


if __name__ == "__main__":
    main()
