#!/usr/bin/env python3
"""tcpprobe integration-test lab: TCP servers with well-defined close behaviour.

Runs as ONE process (listening sockets multiplexed with `selectors`, one
daemon thread per accepted connection).  Started by tests/lab/lab.sh inside
the server network namespace; python3 standard library only.

Port  Behaviour            What the server does on each connection
----  -------------------  ---------------------------------------------------
   7  echo                 Echo everything back until client EOF, then close.
  80  http                 Read request until the blank line (CRLFCRLF or
                           LFLF), reply "HTTP/1.0 200 OK" + Content-Length +
                           HTTP_BODY, then close.  The SERVER closes first.
8001  close_after_eof      Read (discard) until client EOF, sleep 0.5 s,
                           then close.
8002  close_after_eof      Read (discard) until client EOF, close at once.
8003  send_after_eof       Read (discard) until client EOF, then send 5000
                           bytes b"x", then close.
8004  rst_after_reply      Read the request line (up to the first LF), reply
                           RST_REPLY, wait 0.1 s, then close with SO_LINGER
                           {on, 0}: the kernel sends RST instead of FIN.
8005  never_close          Read (discard) until client EOF, then keep the
                           socket open until the process exits (server side
                           stays in CLOSE_WAIT).
8006  http_shutdown        As http, but end with shutdown(SHUT_WR) instead of
                           close(), and keep the socket until the client's
                           FIN or RST (or the idle timeout): its FIN-WAIT-2
                           has no bound (tcp_fin_timeout covers only orphans).
8007  keepalive_echo       Echo, with SO_KEEPALIVE and TCP_KEEPIDLE 3 s,
                           TCP_KEEPINTVL 1 s, TCP_KEEPCNT 4: an idle client
                           gets 4 probes 1 s apart after 3 s, then a RST.

(Ports 81/82/83 are NOT served here: 81 = closed (kernel RST), 82 = SYNs
dropped by nft, 83 = nft reject with ICMP admin-prohibited; see lab.sh.)

Adding a behaviour: write `def handler(conn, addr, **opts)` (it may return
without closing; serve_conn() closes the socket afterwards unless the handler
returns KEEP_OPEN), then add a row `port: Behaviour(name, handler, {opts})` to
the BEHAVIOURS table and document the port above and in README.md.

Every read is subject to a per-connection idle timeout (--idle-timeout,
default 120 s) so that a forgotten client cannot pin a thread forever; on
timeout the connection is closed normally (FIN).
"""

import argparse
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict

# Known payloads (tests may import these constants).
HTTP_BODY = b"tcpprobe-lab OK\n"
SEND_AFTER_EOF_BYTE = b"x"
RST_REPLY = b"OK\r\n"

MAX_REQUEST = 64 * 1024       # bound on what http / rst_after_reply buffer
RECV_CHUNK = 65536
KEEP_OPEN = object()          # handler return value: do not close the socket

_log_lock = threading.Lock()
_kept_open = []               # sockets held by never_close (never released)
_kept_lock = threading.Lock()


def log(msg: str) -> None:
    with _log_lock:
        sys.stderr.write("%s servers.py[%d]: %s\n"
                         % (time.strftime("%H:%M:%S"), os.getpid(), msg))
        sys.stderr.flush()


def drain_until_eof(conn: socket.socket) -> int:
    """Read and discard until the peer's FIN. Returns bytes read."""
    total = 0
    while True:
        data = conn.recv(RECV_CHUNK)
        if not data:
            return total
        total += len(data)


def read_until(conn: socket.socket, terminators) -> bytes:
    """Read until one of `terminators` is seen, EOF, or MAX_REQUEST bytes."""
    buf = b""
    while len(buf) < MAX_REQUEST:
        if any(t in buf for t in terminators):
            break
        data = conn.recv(RECV_CHUNK)
        if not data:
            break
        buf += data
    return buf


# ----------------------------------------------------------------- behaviours

def h_echo(conn, addr):
    while True:
        data = conn.recv(RECV_CHUNK)
        if not data:
            return
        conn.sendall(data)


def h_http(conn, addr, body=HTTP_BODY):
    req = read_until(conn, (b"\r\n\r\n", b"\n\n"))
    first = req.split(b"\n", 1)[0].strip()
    log("http %s:%d request %r" % (addr[0], addr[1], first[:80]))
    resp = (b"HTTP/1.0 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n"
            b"\r\n" + body)
    conn.sendall(resp)
    # return -> serve_conn closes: the server sends FIN first.


def h_close_after_eof(conn, addr, delay=0.0):
    n = drain_until_eof(conn)
    log("close_after_eof %s:%d got EOF after %d bytes, closing in %.3fs"
        % (addr[0], addr[1], n, delay))
    if delay > 0:
        time.sleep(delay)


def h_send_after_eof(conn, addr, nbytes=5000, byte=SEND_AFTER_EOF_BYTE):
    n = drain_until_eof(conn)
    log("send_after_eof %s:%d got EOF after %d bytes, sending %d bytes"
        % (addr[0], addr[1], n, nbytes))
    conn.sendall(byte * nbytes)


def h_rst_after_reply(conn, addr, reply=RST_REPLY, delay=0.1):
    line = read_until(conn, (b"\n",))
    log("rst_after_reply %s:%d line %r" % (addr[0], addr[1], line[:80]))
    conn.sendall(reply)
    if delay > 0:
        time.sleep(delay)
    # l_onoff=1, l_linger=0: close() aborts the connection with RST.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    (1).to_bytes(4, sys.byteorder) + (0).to_bytes(4, sys.byteorder))


def h_never_close(conn, addr):
    n = drain_until_eof(conn)
    log("never_close %s:%d got EOF after %d bytes, holding socket open"
        % (addr[0], addr[1], n))
    with _kept_lock:
        _kept_open.append(conn)
    return KEEP_OPEN


def h_http_shutdown(conn, addr):
    h_http(conn, addr)
    conn.shutdown(socket.SHUT_WR)
    n = drain_until_eof(conn)
    log("http_shutdown %s:%d client closed after %d more bytes" % (addr[0], addr[1], n))


def h_keepalive_echo(conn, addr, idle=3, intvl=1, count=4):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    h_echo(conn, addr)


@dataclass
class Behaviour:
    name: str
    handler: Callable
    opts: Dict = field(default_factory=dict)


# port -> behaviour.  Extend here (and document in the module docstring and
# tests/lab/README.md).
BEHAVIOURS: Dict[int, Behaviour] = {
    7:    Behaviour("echo", h_echo),
    80:   Behaviour("http", h_http),
    8001: Behaviour("close_after_eof", h_close_after_eof, {"delay": 0.5}),
    8002: Behaviour("close_after_eof", h_close_after_eof, {"delay": 0.0}),
    8003: Behaviour("send_after_eof", h_send_after_eof, {"nbytes": 5000}),
    8004: Behaviour("rst_after_reply", h_rst_after_reply),
    8005: Behaviour("never_close", h_never_close),
    8006: Behaviour("http_shutdown", h_http_shutdown),
    8007: Behaviour("keepalive_echo", h_keepalive_echo, {"idle": 3, "intvl": 1, "count": 4}),
}


# --------------------------------------------------------------------- plumbing

def serve_conn(conn: socket.socket, addr, port: int, beh: Behaviour,
               idle_timeout: float) -> None:
    conn.settimeout(idle_timeout if idle_timeout > 0 else None)
    keep = False
    try:
        keep = beh.handler(conn, addr, **beh.opts) is KEEP_OPEN
    except socket.timeout:
        log("port %d %s:%d idle timeout, closing" % (port, addr[0], addr[1]))
    except OSError as e:
        log("port %d %s:%d error: %s" % (port, addr[0], addr[1], e))
    except Exception as e:  # noqa: BLE001 - a handler bug must not kill us
        log("port %d %s:%d handler crashed: %r" % (port, addr[0], addr[1], e))
    finally:
        if not keep:
            try:
                conn.close()
            except OSError:
                pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bind", default="0.0.0.0", help="address to bind")
    ap.add_argument("--ports", default="",
                    help="comma separated subset of ports (default: all)")
    ap.add_argument("--pidfile", help="write own PID here")
    ap.add_argument("--idle-timeout", type=float, default=120.0,
                    help="per-connection read timeout in seconds (0 = none)")
    ap.add_argument("--list", action="store_true",
                    help="print 'port behaviour' lines and exit")
    args = ap.parse_args()

    if args.list:
        for port in sorted(BEHAVIOURS):
            b = BEHAVIOURS[port]
            print(port, b.name, " ".join("%s=%r" % kv for kv in b.opts.items()))
        return 0

    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())

    ports = sorted(BEHAVIOURS)
    if args.ports:
        ports = [int(p) for p in args.ports.split(",") if p]
        for p in ports:
            if p not in BEHAVIOURS:
                ap.error("no behaviour for port %d" % p)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    for port in ports:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((args.bind, port))
        ls.listen(128)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, port)
        log("listening %s:%d (%s)" % (args.bind, port, BEHAVIOURS[port].name))

    while True:
        for key, _ in sel.select():
            port = key.data
            try:
                conn, addr = key.fileobj.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            conn.setblocking(True)
            threading.Thread(target=serve_conn,
                             args=(conn, addr, port, BEHAVIOURS[port],
                                   args.idle_timeout),
                             daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
