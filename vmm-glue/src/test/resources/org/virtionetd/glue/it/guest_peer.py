"""The host side of a long-lived test guest (GuestPeer.java): commands for the guest's agent and byte-checked
streams, run inside the test's network namespace.

HTTP on --http-port:
  GET  /cmd/AGENT         the file DIR/cmd-AGENT.sh once (it is renamed away when served); 404 when there is none
  GET  /stream/NAME       seeded random bytes until DIR/stop-NAME exists (or --max-stream bytes)
  GET  /file/NAME/BYTES   BYTES seeded random bytes
TCP on --tcp-port: every connection sends a first line with its NAME, then a stream of any length until EOF.
After each transfer one line on stdout: SENT|RECV NAME BYTES SHA256 (the guest prints the hash it saw), so a
lost, duplicated or changed byte anywhere shows as a different hash.
"""
import argparse
import hashlib
import http.server
import os
import random
import socketserver
import sys
import threading

CHUNK = 65536


def report(kind, name, count, digest):
    sys.stdout.write("%s %s %d %s\n" % (kind, name, count, digest))
    sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "cmd" and parts[1].isalnum():
            src = os.path.join(ARGS.dir, "cmd-" + parts[1] + ".sh")
            served = os.path.join(ARGS.dir, "cmd-" + parts[1] + ".served")
            try:
                os.replace(src, served)
            except FileNotFoundError:
                self.send_error(404)
                return
            with open(served, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if len(parts) == 2 and parts[0] == "stream":
            self.send_seeded(parts[1], None)
            return
        if len(parts) == 3 and parts[0] == "file" and parts[2].isdigit():
            self.send_seeded(parts[1], int(parts[2]))
            return
        self.send_error(404)

    def send_seeded(self, name, length):
        rng = random.Random(name)
        digest = hashlib.sha256()
        sent = 0
        stop = os.path.join(ARGS.dir, "stop-" + name)
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            while True:
                if length is not None:
                    if sent >= length:
                        break
                    n = min(CHUNK, length - sent)
                else:
                    if sent >= ARGS.max_stream or os.path.exists(stop):
                        break
                    n = CHUNK
                block = rng.randbytes(n)
                self.wfile.write(block)
                digest.update(block)
                sent += n
            self.wfile.flush()
            report("SENT", name, sent, digest.hexdigest())
        except OSError as e:
            report("SENT-FAILED", name, sent, type(e).__name__)


class TcpSink(socketserver.BaseRequestHandler):
    def handle(self):
        digest = hashlib.sha256()
        got = 0
        head = b""
        name = None
        while True:
            block = self.request.recv(CHUNK)
            if not block:
                break
            if name is None:
                head += block
                if b"\n" not in head:
                    continue
                line, block = head.split(b"\n", 1)
                name = line.decode("ascii", "replace").strip() or "unnamed"
            digest.update(block)
            got += len(block)
        report("RECV", name or "unnamed", got, digest.hexdigest())


class Threading(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HttpThreading(http.server.ThreadingHTTPServer):
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--tcp-port", type=int, default=5002)
    p.add_argument("--max-stream", type=int, default=1 << 34)
    global ARGS
    ARGS = p.parse_args()
    http_server = HttpThreading(("0.0.0.0", ARGS.http_port), Handler)
    tcp_server = Threading(("0.0.0.0", ARGS.tcp_port), TcpSink)
    threading.Thread(target=tcp_server.serve_forever, daemon=True).start()
    sys.stdout.write("LISTENING %d %d\n" % (ARGS.http_port, ARGS.tcp_port))
    sys.stdout.flush()
    http_server.serve_forever()


if __name__ == "__main__":
    main()
