#!/usr/bin/env python3
"""A programmable, non-Linux TCP peer for the tcpprobe lab (python3 stdlib only).

It plays the server side of TCP entirely in user space, so the lab can show
tcpprobe a stack whose timers and TIME-WAIT rules are NOT Linux's: a 3 s
initial SYN-ACK timeout, a RST instead of silence when it gives up, a 30 s
TIME-WAIT that only answers a retransmitted FIN, RFC 1337, and so on.

    ip netns exec LAB-srv python3 foreign_peer.py --bind IP --port P \
        [--config JSON|@FILE] [--log FILE] [--lifetime S] [--pidfile F]
    ip netns exec LAB-cli python3 foreign_peer.py --craft JSON   # send one segment

How it works
  * Receive: a raw socket (AF_INET, SOCK_RAW, IPPROTO_TCP) bound to --bind.
    Raw sockets get their copy after the netfilter input hook, so segments
    dropped by nft in the namespace (prerouting / input) never reach us.
    Only segments to --bind:--port with a correct TCP checksum are used.
  * Send: a raw socket (IPPROTO_RAW, i.e. IP_HDRINCL); the IPv4 and TCP
    headers and both checksums are built here.  The socket carries SO_MARK
    --mark (0x7470).
  * Nothing listens on the port in the kernel, so the kernel answers each
    segment with a RST of its own.  At start-up the peer creates the nft
    table `inet tpforeign_<port>` whose output chain drops RSTs from the port
    unless they carry our mark; the table is deleted on every way out
    (end of --lifetime, SIGTERM, SIGINT, SIGHUP, errors).  --no-nft skips it
    (the caller then owns such a table).
  * Single thread: a select() loop plus a heap of timers.

Every event is one JSON object per line on stdout or --log, always with
"t" (time.monotonic(), the same clock in every namespace) and "event".
Connection events also carry "cip"/"cport" (the client) and the relevant
sequence numbers (absolute).  The first line is {"event": "ready", ...},
written once the sockets and the nft table exist.

The configuration keys and their defaults are in DEFAULTS below and in
tests/lab/README.md.
"""

import argparse
import codecs
import heapq
import itertools
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time

M32 = 0xFFFFFFFF
SO_MARK = 36                         # <asm-generic/socket.h>
DEFAULT_MARK = 0x7470                # "tp"
MAX_CONNECTIONS = 4096               # bound on the connection table
MAX_RX_BUFFER = 256 * 1024           # bound on what we keep of a request

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

DEFAULTS = {
    # opening
    "listen": True,                  # a SYN without ACK opens a connection
    "synack_gaps": [3.0, 6.0, 12.0], # seconds between SYN-ACK copies
    "synack_end": "silence",         # "silence" | "rst" when the request is forgotten
    "synack_end_after": None,        # s after the last copy (default: last gap x 2)
    "mss": 1460,                     # MSS option of the SYN-ACK (null: no MSS option)
    "sack": False,                   # sackOK in the SYN-ACK (if the SYN had it)
    "wscale": None,                  # our window scale shift (if the SYN had wscale)
    "timestamps": False,             # timestamps (if the SYN had them), TSval in ms
    "force_options": False,          # send sack/wscale/ts even if the SYN lacked them
    "window": 65535,                 # our receive window in bytes
    # data and closing
    "request_end": "\r\n\r\n",       # the reply is sent once the data contains this
    "reply": "HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nforeign\n",
    "close_first": True,             # FIN right after the reply
    "fin_with_data": False,          # FIN on the last data segment
    "close_delay": 0.0,              # client FIN first: s between our ACK and our FIN
    "fin_gaps": [2.0, 2.0, 2.0],     # s between copies of unacked data / our FIN
    "fin_end": "silence",            # "silence" | "rst" when it gives up
    "fin_end_after": None,           # s after the last copy (default: last gap)
    "fin_wait2_timeout": 60.0,       # FIN-WAIT-2 without the client's FIN: forget
    # TIME-WAIT
    "tw_duration": 30.0,
    "tw_answers": ["retx-fin"],      # kinds answered with an ACK
    "tw_restarts": ["retx-fin"],     # kinds that restart tw_duration (+ any-fin, any)
    "tw_rfc1337": False,             # True: an in-window RST does not end TIME-WAIT
    "tw_syn_accept": False,          # SYN with seq > old RCV.NXT opens a new connection
    # no connection
    "closed_reply": "rst",           # "rst" | "rst-ack-only" | "silent"
}

TW_KINDS = ("retx-fin", "fin-noack", "fin-ack", "ack", "syn", "other")
TW_RESTART_KINDS = TW_KINDS + ("any-fin", "any")
ENDS = ("silence", "rst")
CLOSED_REPLIES = ("rst", "rst-ack-only", "silent")


class ConfigError(Exception):
    pass


class Stop(Exception):
    """Raised by the signal handlers: leave the loop, clean up, exit."""


# --------------------------------------------------------------------------
# configuration

def _bytes_value(v, key):
    if not isinstance(v, str):
        raise ConfigError("%s must be a string" % key)
    if "\\" in v:                   # C-style escapes given literally: "\\r\\n"
        v = codecs.decode(v, "unicode_escape")
    try:
        return v.encode("latin-1")
    except UnicodeEncodeError:
        return v.encode("utf-8")


def _gaps(v, key):
    if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                          and 0 < x <= 3600 for x in v):
        raise ConfigError("%s must be a list of seconds in (0, 3600]" % key)
    if len(v) > 64:
        raise ConfigError("%s: at most 64 gaps" % key)
    return [float(x) for x in v]


def _seconds(v, key, allow_none=False):
    if v is None and allow_none:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 3600:
        raise ConfigError("%s must be a number of seconds in [0, 3600]" % key)
    return float(v)


def _choice(v, key, allowed):
    if v not in allowed:
        raise ConfigError("%s must be one of %s, not %r" % (key, ", ".join(allowed), v))
    return v


def _kinds(v, key, allowed):
    if not isinstance(v, list) or not all(x in allowed for x in v):
        raise ConfigError("%s must be a list of %s" % (key, ", ".join(allowed)))
    return set(v)


def _bool(v, key):
    if not isinstance(v, bool):
        raise ConfigError("%s must be true or false" % key)
    return v


def load_config(text):
    """JSON text (or @FILE) -> validated config dict (defaults filled in)."""
    raw = {}
    if text:
        if text.startswith("@"):
            with open(text[1:]) as f:
                text = f.read()
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ConfigError("--config is not JSON: %s" % e)
        if not isinstance(raw, dict):
            raise ConfigError("--config must be a JSON object")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError("unknown config key(s): %s" % ", ".join(unknown))
    c = dict(DEFAULTS)
    c.update(raw)
    c["listen"] = _bool(c["listen"], "listen")
    c["synack_gaps"] = _gaps(c["synack_gaps"], "synack_gaps")
    c["synack_end"] = _choice(c["synack_end"], "synack_end", ENDS)
    c["synack_end_after"] = _seconds(c["synack_end_after"], "synack_end_after", True)
    if c["synack_end_after"] is None:
        c["synack_end_after"] = 2 * c["synack_gaps"][-1] if c["synack_gaps"] else 0.0
    if c["mss"] is not None and (not isinstance(c["mss"], int) or not 1 <= c["mss"] <= 65535):
        raise ConfigError("mss must be an integer 1..65535 or null")
    if c["wscale"] is not None and (not isinstance(c["wscale"], int) or not 0 <= c["wscale"] <= 14):
        raise ConfigError("wscale must be an integer 0..14 or null")
    for k in ("sack", "timestamps", "force_options", "close_first", "fin_with_data",
              "tw_rfc1337", "tw_syn_accept"):
        c[k] = _bool(c[k], k)
    if not isinstance(c["window"], int) or not 0 <= c["window"] <= 1 << 30:
        raise ConfigError("window must be an integer 0..2^30")
    c["request_end"] = _bytes_value(c["request_end"], "request_end")
    c["reply"] = _bytes_value(c["reply"], "reply")
    c["close_delay"] = _seconds(c["close_delay"], "close_delay")
    c["fin_gaps"] = _gaps(c["fin_gaps"], "fin_gaps")
    c["fin_end"] = _choice(c["fin_end"], "fin_end", ENDS)
    c["fin_end_after"] = _seconds(c["fin_end_after"], "fin_end_after", True)
    if c["fin_end_after"] is None:
        c["fin_end_after"] = c["fin_gaps"][-1] if c["fin_gaps"] else 0.0
    c["fin_wait2_timeout"] = _seconds(c["fin_wait2_timeout"], "fin_wait2_timeout")
    c["tw_duration"] = _seconds(c["tw_duration"], "tw_duration")
    c["tw_answers"] = _kinds(c["tw_answers"], "tw_answers", TW_KINDS)
    c["tw_restarts"] = _kinds(c["tw_restarts"], "tw_restarts", TW_RESTART_KINDS)
    c["closed_reply"] = _choice(c["closed_reply"], "closed_reply", CLOSED_REPLIES)
    return c


# --------------------------------------------------------------------------
# sequence numbers, checksums, headers

def sdiff(a, b):
    """a - b in sequence space, as a signed 32-bit number."""
    d = (a - b) & M32
    return d - (1 << 32) if d & 0x80000000 else d


def seq_gt(a, b):
    return sdiff(a, b) > 0


def inet_checksum(data):
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_checksum(src, dst, segment):
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(segment))
    return inet_checksum(pseudo + segment)


def flag_letters(flags):
    s = "".join(ch for bit, ch in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"))
                if flags & bit)
    return s + ("." if flags & ACK else "")


def parse_flags(text):
    """'SA', 'FA', 'R', 'S.' ... -> flag bits ('.' and 'A' both mean ACK)."""
    bits = {"S": SYN, "F": FIN, "R": RST, "P": PSH, "A": ACK, ".": ACK, "U": URG}
    out = 0
    for ch in text.upper():
        if ch not in bits:
            raise ValueError("unknown TCP flag letter %r" % ch)
        out |= bits[ch]
    return out


def encode_options(mss=None, sack=False, wscale=None, ts=None):
    """Option bytes (padded to 4) in the order Linux uses. ts = (tsval, tsecr)."""
    o = b""
    if mss is not None:
        o += struct.pack("!BBH", 2, 4, mss)
    if ts is not None and sack:
        o += struct.pack("!BBBBII", 4, 2, 8, 10, ts[0] & M32, ts[1] & M32)
    elif ts is not None:
        o += struct.pack("!BBBBII", 1, 1, 8, 10, ts[0] & M32, ts[1] & M32)
    elif sack:
        o += struct.pack("!BBBB", 1, 1, 4, 2)
    if wscale is not None:
        o += struct.pack("!BBBB", 1, 3, 3, wscale)
    while len(o) % 4:
        o += b"\x01"
    return o


def parse_options(raw):
    """{'mss': int, 'sack': True, 'wscale': int, 'ts': (val, ecr)} of an option block."""
    out, i = {}, 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            break                                   # malformed: stop parsing
        ln = raw[i + 1]
        body = raw[i + 2:i + ln]
        if kind == 2 and ln == 4:
            out["mss"] = struct.unpack("!H", body)[0]
        elif kind == 3 and ln == 3:
            out["wscale"] = body[0]
        elif kind == 4 and ln == 2:
            out["sack"] = True
        elif kind == 8 and ln == 10:
            out["ts"] = struct.unpack("!II", body)
        i += ln
    return out


def build_packet(src, dst, sport, dport, seq, ack, flags, window=65535, options=b"",
                 payload=b"", ttl=64, ip_id=None):
    """IPv4 + TCP bytes with correct checksums."""
    off = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIHHHH", sport, dport, seq & M32, ack & M32,
                      (off << 12) | flags, window & 0xFFFF, 0, 0) + options + payload
    csum = tcp_checksum(src, dst, tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    total = 20 + len(tcp)
    if ip_id is None:
        ip_id = random.getrandbits(16)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ip_id, 0x4000, ttl, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
    return ip + tcp


class Segment:
    __slots__ = ("src", "dst", "sport", "dport", "seq", "ack", "flags", "window", "opts",
                 "payload")

    @property
    def seglen(self):
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)


def parse_packet(data):
    """Raw IPv4 datagram -> Segment, or None if it is not a valid TCP segment."""
    if len(data) < 40 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 15) * 4
    total = struct.unpack("!H", data[2:4])[0]
    if ihl < 20 or total > len(data) or total < ihl + 20 or data[9] != 6:
        return None
    if struct.unpack("!H", data[6:8])[0] & 0x3FFF:    # a fragment: not handled
        return None
    tcp = data[ihl:total]
    s = Segment()
    s.src, s.dst = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20])
    if tcp_checksum(s.src, s.dst, tcp) != 0:
        return None
    s.sport, s.dport, s.seq, s.ack, offflags, s.window = struct.unpack("!HHIIHH", tcp[:16])
    off = (offflags >> 12) * 4
    if off < 20 or off > len(tcp):
        return None
    s.flags = offflags & 0x3F
    s.opts = parse_options(tcp[20:off])
    s.payload = bytes(tcp[off:])
    return s


# --------------------------------------------------------------------------
# the peer

class Timer:
    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when, fn):
        self.when, self.fn, self.cancelled = when, fn, False

    def cancel(self):
        self.cancelled = True


class Conn:
    """One connection (or held half-open request), keyed by the client's address."""

    def __init__(self, cip, cport):
        self.cip, self.cport = cip, cport
        self.state = "SYN-RECEIVED"
        self.irs = self.iss = 0
        self.snd_una = self.snd_nxt = self.rcv_nxt = 0
        self.client_mss = 536
        self.sack = False
        self.wscale = None           # our shift, when window scaling is on
        self.ts = False
        self.ts_recent = 0
        self.out = b""               # our unacknowledged data (from snd_una)
        self.fin_seq = None          # sequence number of our FIN, once sent
        self.fin_acked = False
        self.client_fin_seq = None   # sequence number of the client's FIN
        self.rx = b""
        self.replied = False
        self.timer = None            # retransmission / TIME-WAIT / give-up timer
        self.close_timer = None
        self.copy = 0                # copies sent of the current flight (1 = first)
        self.tw_entered = None


class Peer:
    def __init__(self, bind, port, cfg, log, mark=DEFAULT_MARK):
        self.bind, self.port, self.cfg, self.logf, self.mark = bind, port, cfg, log, mark
        self.conns = {}
        self.timers = []
        self.tiebreak = itertools.count()
        self.t0 = time.monotonic()
        self.ts_offset = random.getrandbits(32)
        self.rx_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        self.rx_sock.bind((bind, 0))
        self.rx_sock.setblocking(False)
        self.rx_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.tx_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx_sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)

    # ---- logging
    def log(self, event, conn=None, **kw):
        rec = {"t": round(time.monotonic(), 6), "event": event}
        if conn is not None:
            rec["cip"], rec["cport"], rec["state"] = conn.cip, conn.cport, conn.state
        rec.update(kw)
        self.logf.write(json.dumps(rec, sort_keys=False) + "\n")
        self.logf.flush()

    # ---- timers
    def at(self, delay, fn):
        t = Timer(time.monotonic() + delay, fn)
        heapq.heappush(self.timers, (t.when, next(self.tiebreak), t))
        return t

    def run_due(self):
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, t = heapq.heappop(self.timers)
            if not t.cancelled:
                t.fn()

    def next_timeout(self):
        while self.timers and self.timers[0][2].cancelled:
            heapq.heappop(self.timers)
        return self.timers[0][0] - time.monotonic() if self.timers else None

    # ---- output
    def tsval(self):
        return (int((time.monotonic() - self.t0) * 1000) + self.ts_offset) & M32

    def emit(self, dst, dport, seq, ack, flags, options=b"", payload=b"", window=None,
             event=None, conn=None, **kw):
        if window is None:
            window = min(self.cfg["window"], 65535)
        pkt = build_packet(self.bind, dst, self.port, dport, seq, ack, flags, window, options, payload)
        try:
            self.tx_sock.sendto(pkt, (dst, 0))
        except OSError as e:
            self.log("send-error", conn, error=str(e))
        if event:
            self.log(event, conn, cip=dst, cport=dport, flags=flag_letters(flags), seq=seq & M32,
                     ack=ack & M32 if flags & ACK else None, len=len(payload), **kw)

    def send(self, c, flags, seq, payload=b"", event=None, **kw):
        """A segment on connection c (ACK set unless flags is a bare RST)."""
        opts = encode_options(ts=(self.tsval(), c.ts_recent)) if c.ts else b""
        window = min(self.cfg["window"], 65535)
        if c.wscale is not None:
            window = min(self.cfg["window"] >> c.wscale, 65535)
        self.emit(c.cip, c.cport, seq, c.rcv_nxt, flags, opts, payload, window, event, c, **kw)

    def send_ack(self, c, event="ack", **kw):
        self.send(c, ACK, c.snd_nxt, event=event, **kw)

    def send_synack(self, c, event):
        cfg = self.cfg
        opts = encode_options(cfg["mss"], c.sack, c.wscale,
                              (self.tsval(), c.ts_recent) if c.ts else None)
        self.emit(c.cip, c.cport, c.iss, c.rcv_nxt, SYN | ACK, opts, b"",
                  min(cfg["window"], 65535), event, c, copy=c.copy, irs=c.irs)

    def closed_reply(self, s, why):
        """RFC 9293 §3.10.7.1 reset for a segment that has no connection."""
        if s.flags & RST:
            return
        policy = self.cfg["closed_reply"]
        if policy == "silent":
            self.log("closed-ignore", None, cip=s.src, cport=s.sport, why=why,
                     flags=flag_letters(s.flags), seq=s.seq)
            return
        if policy == "rst-ack-only" and not s.flags & ACK and not s.flags & SYN:
            self.log("closed-ignore", None, cip=s.src, cport=s.sport, why=why,
                     flags=flag_letters(s.flags), seq=s.seq)
            return
        if s.flags & ACK:
            self.emit(s.src, s.sport, s.ack, 0, RST, window=0, event="rst", why=why)
        else:
            self.emit(s.src, s.sport, 0, s.seq + s.seglen, RST | ACK, window=0, event="rst", why=why)

    # ---- connection table
    def forget(self, c, why):
        for t in (c.timer, c.close_timer):
            if t:
                t.cancel()
        if self.conns.get((c.cip, c.cport)) is c:
            del self.conns[(c.cip, c.cport)]
        self.log("forget", c, why=why)

    def set_state(self, c, state):
        if c.state != state:
            old = c.state
            c.state = state
            self.log("state", c, old=old, new=state)

    # ---- opening
    def new_request(self, s):
        cfg = self.cfg
        if len(self.conns) >= MAX_CONNECTIONS:
            self.log("overflow", None, cip=s.src, cport=s.sport)
            return
        c = Conn(s.src, s.sport)
        c.irs = s.seq
        c.rcv_nxt = (s.seq + 1) & M32
        c.iss = random.getrandbits(32)
        c.snd_una, c.snd_nxt = c.iss, (c.iss + 1) & M32
        c.client_mss = s.opts.get("mss", 536)
        force = cfg["force_options"]
        c.sack = cfg["sack"] and (force or s.opts.get("sack", False))
        c.wscale = cfg["wscale"] if (force or "wscale" in s.opts) else None
        c.ts = cfg["timestamps"] and (force or "ts" in s.opts)
        c.ts_recent = s.opts.get("ts", (0, 0))[0]
        self.conns[(c.cip, c.cport)] = c
        self.log("syn", c, seq=s.seq, opts=s.opts)
        c.copy = 1
        self.send_synack(c, "synack")
        self.arm_synack(c, 0)

    def arm_synack(self, c, idx):
        gaps = self.cfg["synack_gaps"]
        if idx < len(gaps):
            def fire():
                c.copy += 1
                self.send_synack(c, "synack-retx")
                self.arm_synack(c, idx + 1)
            c.timer = self.at(gaps[idx], fire)
        else:
            c.timer = self.at(self.cfg["synack_end_after"], lambda: self.synack_give_up(c))

    def synack_give_up(self, c):
        end = self.cfg["synack_end"]
        self.log("gave-up", c, phase="synack", end=end, copies=c.copy)
        if end == "rst":
            self.emit(c.cip, c.cport, c.snd_nxt, c.rcv_nxt, RST | ACK, window=0, event="rst",
                      conn=c, why="synack-give-up")
        self.forget(c, "synack-give-up")

    def on_syn_received(self, c, s):
        if s.flags & RST:
            if s.seq == c.rcv_nxt:
                self.log("rst-rx", c, seq=s.seq)
                self.forget(c, "rst")
            return
        if s.flags & SYN and not s.flags & ACK:
            if s.seq == c.irs:                     # the client retransmitted its SYN
                self.send_synack(c, "synack-resend")
            else:
                self.log("ignore", c, why="other-syn", seq=s.seq)
            return
        # RFC 9293 §3.10.7.4, first check: a segment outside the window is answered with
        # an ACK and dropped; it completes nothing (tcpprobe's liveness probes rely on it).
        d = sdiff(s.seq, c.rcv_nxt)
        if d < 0 or d >= max(self.cfg["window"], 1):
            self.send_ack(c, event="ack", why="old-or-out-of-window", seq_rx=s.seq)
            return
        if not s.flags & ACK:
            self.log("ignore", c, why="no-ack", flags=flag_letters(s.flags), seq=s.seq)
            return
        if s.ack != c.snd_nxt:
            self.emit(c.cip, c.cport, s.ack, 0, RST, window=0, event="rst", conn=c, why="bad-ack")
            return
        c.timer.cancel()
        c.timer = None
        c.snd_una = c.snd_nxt
        c.copy = 0
        self.set_state(c, "ESTABLISHED")
        self.log("established", c, iss=c.iss, irs=c.irs)
        self.on_synchronized(c, s)

    # ---- data / closing
    def arm_rtx(self, c, idx=0):
        """Retransmission schedule of our unacked data and FIN (fin_gaps)."""
        if c.timer:
            c.timer.cancel()
        gaps = self.cfg["fin_gaps"]
        if idx < len(gaps):
            c.timer = self.at(gaps[idx], lambda: self.retransmit(c, idx))
        else:
            c.timer = self.at(self.cfg["fin_end_after"], lambda: self.rtx_give_up(c))

    def retransmit(self, c, idx):
        c.copy += 1
        self.transmit(c, c.snd_una, retx=True)
        self.arm_rtx(c, idx + 1)

    def rtx_give_up(self, c):
        end = self.cfg["fin_end"]
        phase = "fin" if c.fin_seq is not None else "data"
        self.log("gave-up", c, phase=phase, end=end, copies=c.copy)
        if end == "rst":
            self.send(c, RST | ACK, c.snd_nxt, event="rst", why=phase + "-give-up")
        self.forget(c, phase + "-give-up")

    def transmit(self, c, start, retx=False):
        """(Re)send our data from `start` up to snd_nxt, FIN included if sent."""
        mss = max(1, min(c.client_mss, self.cfg["mss"] or 536))
        off = sdiff(start, c.snd_una)
        chunks = [(i, c.out[i:i + mss]) for i in range(off, len(c.out), mss)]
        suffix = "-retx" if retx else ""
        for n, (i, chunk) in enumerate(chunks):
            last = n == len(chunks) - 1
            fin = FIN if (last and c.fin_seq is not None and self.cfg["fin_with_data"]) else 0
            self.send(c, ACK | PSH | fin, (c.snd_una + i) & M32, chunk,
                      event=("data+fin" if fin else "data") + suffix, copy=c.copy)
        if c.fin_seq is not None and not (chunks and self.cfg["fin_with_data"]):
            self.send(c, ACK | FIN, c.fin_seq, event="fin" + suffix, copy=c.copy)

    def send_data_and_fin(self, c, data, fin):
        """Queue new data and/or our FIN, send them, start the schedule."""
        start = c.snd_nxt
        c.out += data
        c.snd_nxt = (c.snd_nxt + len(data)) & M32
        if fin:
            c.fin_seq = c.snd_nxt
            c.snd_nxt = (c.snd_nxt + 1) & M32
        c.copy = 1
        self.transmit(c, start)
        self.arm_rtx(c, 0)

    def our_close(self, c):
        c.close_timer = None
        if c.state == "CLOSE-WAIT":
            self.set_state(c, "LAST-ACK")
            self.send_data_and_fin(c, b"", True)
        elif c.state == "ESTABLISHED":
            self.set_state(c, "FIN-WAIT-1")
            self.send_data_and_fin(c, b"", True)

    def enter_time_wait(self, c):
        if c.timer:
            c.timer.cancel()
        self.set_state(c, "TIME-WAIT")
        c.tw_entered = time.monotonic()
        self.log("tw-enter", c, snd_nxt=c.snd_nxt, rcv_nxt=c.rcv_nxt,
                 client_fin_seq=c.client_fin_seq, duration=self.cfg["tw_duration"])
        c.timer = self.at(self.cfg["tw_duration"], lambda: self.tw_expire(c))

    def tw_expire(self, c):
        self.log("tw-expire", c, lasted=round(time.monotonic() - c.tw_entered, 6))
        self.forget(c, "tw-expire")

    def process_ack(self, c, s):
        """RFC 9293 ACK processing; False if the segment must be dropped."""
        if seq_gt(s.ack, c.snd_nxt):
            self.send_ack(c, event="ack", why="ack-above-snd-nxt")
            return False
        if seq_gt(s.ack, c.snd_una):
            n = sdiff(s.ack, c.snd_una)
            c.out = c.out[min(n, len(c.out)):]
            c.snd_una = s.ack
            if c.fin_seq is not None and s.ack == (c.fin_seq + 1) & M32:
                c.fin_acked = True
                self.log("fin-acked", c, ack=s.ack)
            if c.snd_una == c.snd_nxt:
                if c.timer:
                    c.timer.cancel()
                    c.timer = None
            else:
                c.copy = 1
                self.arm_rtx(c, 0)
        if c.fin_acked:
            if c.state == "FIN-WAIT-1":
                self.set_state(c, "FIN-WAIT-2")
                c.timer = self.at(self.cfg["fin_wait2_timeout"],
                                  lambda: self.forget(c, "fin-wait-2-timeout"))
            elif c.state == "CLOSING":
                self.enter_time_wait(c)
            elif c.state == "LAST-ACK":
                self.set_state(c, "CLOSED")
                self.forget(c, "closed")
                return False
        return True

    def on_synchronized(self, c, s):
        cfg = self.cfg
        plen = len(s.payload)
        seglen = s.seglen
        wnd = max(cfg["window"], 1)
        if s.flags & RST:
            if s.seq == c.rcv_nxt:
                self.log("rst-rx", c, seq=s.seq)
                self.forget(c, "rst")
            elif 0 < sdiff(s.seq, c.rcv_nxt) < wnd:
                self.send_ack(c, event="challenge-ack", why="rst-in-window")
            return
        if s.flags & SYN:
            self.send_ack(c, event="challenge-ack", why="syn")
            return
        # acceptability (RFC 9293 §3.10.7.4): not acceptable -> ACK, drop
        d = sdiff(s.seq, c.rcv_nxt)
        old = sdiff((s.seq + seglen) & M32, c.rcv_nxt) <= 0 if seglen > 0 else d < 0
        if old or d >= wnd:
            self.send_ack(c, event="ack", why="old-or-out-of-window", seq_rx=s.seq)
            return
        if not s.flags & ACK:
            self.log("ignore", c, why="no-ack", seq=s.seq)
            return
        if s.opts.get("ts") and d <= 0:
            c.ts_recent = s.opts["ts"][0]
        if not self.process_ack(c, s):
            return
        if d > 0:                                  # out of order: no queueing, dup ACK
            self.send_ack(c, event="dup-ack", why="out-of-order", seq_rx=s.seq)
            return
        payload = s.payload[-d:] if d < 0 else s.payload     # trim what we already have
        if d < 0 and -d >= plen:
            payload = b""
        got_data = False
        if payload and c.state in ("ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2"):
            c.rcv_nxt = (c.rcv_nxt + len(payload)) & M32
            if len(c.rx) < MAX_RX_BUFFER:
                c.rx += payload
            got_data = True
            self.log("data-rx", c, seq=s.seq, len=plen, rcv_nxt=c.rcv_nxt)
        fin = bool(s.flags & FIN) and (s.seq + plen) & M32 == c.rcv_nxt
        if fin and c.client_fin_seq is None:
            c.client_fin_seq = c.rcv_nxt
            c.rcv_nxt = (c.rcv_nxt + 1) & M32
            self.log("fin-rx", c, seq=c.client_fin_seq)
        elif fin:
            fin = False
        if got_data or fin:
            self.send_ack(c)
        elif payload:
            self.send_ack(c, event="ack", why="data-not-accepted-in-" + c.state, seq_rx=s.seq)
        if got_data and not c.replied and cfg["request_end"] in c.rx:
            c.replied = True
            close = cfg["close_first"] and c.state == "ESTABLISHED" and not fin
            if close:
                self.set_state(c, "FIN-WAIT-1")
            self.log("request", c, bytes=len(c.rx), reply=len(cfg["reply"]), close=close)
            self.send_data_and_fin(c, cfg["reply"], close)
        if fin:
            if c.state == "ESTABLISHED":
                self.set_state(c, "CLOSE-WAIT")
                c.close_timer = self.at(cfg["close_delay"], lambda: self.our_close(c))
            elif c.state == "FIN-WAIT-1":
                self.set_state(c, "CLOSING")
            elif c.state == "FIN-WAIT-2":
                if c.timer:
                    c.timer.cancel()
                self.enter_time_wait(c)

    # ---- TIME-WAIT
    def tw_kind(self, c, s):
        if s.flags & SYN:
            return "syn"
        if s.flags & FIN:
            if (s.seq + len(s.payload)) & M32 == c.client_fin_seq:
                return "retx-fin"
            return "fin-ack" if s.flags & ACK else "fin-noack"
        if s.flags & ACK:
            return "ack"
        return "other"

    def on_time_wait(self, c, s):
        cfg = self.cfg
        if s.flags & RST:
            if s.seq == c.rcv_nxt and not cfg["tw_rfc1337"]:
                self.log("tw-killed", c, seq=s.seq,
                         lasted=round(time.monotonic() - c.tw_entered, 6))
                self.forget(c, "tw-rst")
            else:
                self.log("tw-ignore", c, kind="rst", seq=s.seq)
            return
        if s.flags & SYN and not s.flags & ACK and cfg["tw_syn_accept"] \
                and seq_gt(s.seq, c.rcv_nxt):
            self.log("tw-syn-accept", c, seq=s.seq, old_rcv_nxt=c.rcv_nxt)
            self.forget(c, "tw-syn-accept")
            self.new_request(s)
            return
        kind = self.tw_kind(c, s)
        restarts = cfg["tw_restarts"]
        if kind in restarts or "any" in restarts or \
                ("any-fin" in restarts and kind in ("retx-fin", "fin-noack", "fin-ack")):
            c.timer.cancel()
            c.timer = self.at(cfg["tw_duration"], lambda: self.tw_expire(c))
            self.log("tw-restart", c, kind=kind, seq=s.seq,
                     after=round(time.monotonic() - c.tw_entered, 6))
            c.tw_entered = time.monotonic()
        if kind in cfg["tw_answers"]:
            self.send_ack(c, event="tw-answer", kind=kind, seq_rx=s.seq)
        else:
            self.log("tw-ignore", c, kind=kind, seq=s.seq, flags=flag_letters(s.flags))

    # ---- input
    def on_segment(self, s):
        self.log("rx", None, cip=s.src, cport=s.sport, flags=flag_letters(s.flags), seq=s.seq,
                 ack=s.ack if s.flags & ACK else None, len=len(s.payload))
        c = self.conns.get((s.src, s.sport))
        if c is None:
            if s.flags & SYN and not s.flags & (ACK | RST) and self.cfg["listen"]:
                self.new_request(s)
            else:
                self.closed_reply(s, "no-connection")
        elif c.state == "SYN-RECEIVED":
            self.on_syn_received(c, s)
        elif c.state == "TIME-WAIT":
            self.on_time_wait(c, s)
        else:
            self.on_synchronized(c, s)

    def drain(self):
        for _ in range(256):                       # bounded per wake-up
            try:
                data = self.rx_sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            s = parse_packet(data)
            if s is None or s.dst != self.bind or s.dport != self.port:
                continue
            self.on_segment(s)

    def loop(self, lifetime):
        end = time.monotonic() + lifetime
        while True:
            self.run_due()
            now = time.monotonic()
            if now >= end:
                self.log("exit", None, why="lifetime", connections=len(self.conns))
                return
            t = self.next_timeout()
            wait = end - now if t is None else max(0.0, min(t, end - now))
            r, _, _ = select.select([self.rx_sock], [], [], wait)
            if r:
                self.drain()


# --------------------------------------------------------------------------
# nft guard against the kernel's own RSTs

def nft_table_name(port):
    return "tpforeign_%d" % port


def nft(args, stdin=None):
    return subprocess.run(["nft"] + args, input=stdin, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=10)


def install_guard(bind, port, mark):
    name = nft_table_name(port)
    nft(["delete", "table", "inet", name])            # a stale copy from a killed run
    rules = ("table inet %s {\n"
             "  chain out {\n"
             "    type filter hook output priority raw; policy accept;\n"
             "    ip saddr %s tcp sport %d tcp flags & rst == rst meta mark != 0x%x drop\n"
             "  }\n"
             "}\n" % (name, bind, port, mark))
    r = nft(["-f", "-"], rules)
    if r.returncode != 0:
        raise RuntimeError("nft could not create table inet %s: %s" % (name, r.stderr.strip()))


def remove_guard(port):
    nft(["delete", "table", "inet", nft_table_name(port)])


# --------------------------------------------------------------------------
# --craft: send one hand-made segment (used by tests as a probe)

def craft(spec_text):
    """Send the segment described by a JSON object:
       {"src", "dst", "sport", "dport", "flags": "FA", "seq", "ack", "window",
        "payload", "mss", "ts": [val, ecr], "count": 1, "mark"}.
    Prints one JSON line per segment sent."""
    spec = json.loads(spec_text)
    count = int(spec.get("count", 1))
    if not 1 <= count <= 100:
        raise ConfigError("craft: count must be 1..100")
    flags = parse_flags(spec.get("flags", "A"))
    opts = encode_options(spec.get("mss"), bool(spec.get("sack")), spec.get("wscale"),
                          tuple(spec["ts"]) if spec.get("ts") else None)
    payload = _bytes_value(spec.get("payload", ""), "payload")
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        if spec.get("mark") is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, int(spec["mark"]))
        for i in range(count):
            pkt = build_packet(spec["src"], spec["dst"], int(spec["sport"]), int(spec["dport"]),
                               int(spec.get("seq", 0)), int(spec.get("ack", 0)), flags,
                               int(spec.get("window", 65535)), opts, payload)
            sock.sendto(pkt, (spec["dst"], 0))
            print(json.dumps({"t": round(time.monotonic(), 6), "event": "crafted",
                              "flags": flag_letters(flags), "seq": int(spec.get("seq", 0)) & M32,
                              "ack": int(spec.get("ack", 0)) & M32, "len": len(payload)}),
                  flush=True)
            if i + 1 < count:
                time.sleep(float(spec.get("interval", 0.1)))
    finally:
        sock.close()
    return 0


# --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="programmable user-space TCP peer for the tcpprobe lab")
    ap.add_argument("--bind", help="local IPv4 address (the lab server address)")
    ap.add_argument("--port", type=int, help="TCP port to serve (nothing may listen on it)")
    ap.add_argument("--config", default="", help="JSON object or @FILE (see README.md)")
    ap.add_argument("--log", help="append JSON event lines here instead of stdout")
    ap.add_argument("--lifetime", type=float, default=600.0, help="exit after this many s [600]")
    ap.add_argument("--pidfile")
    ap.add_argument("--mark", type=lambda x: int(x, 0), default=DEFAULT_MARK,
                    help="SO_MARK of our packets [0x7470]")
    ap.add_argument("--no-nft", action="store_true", help="do not create the RST guard table")
    ap.add_argument("--craft", metavar="JSON", help="send one crafted segment and exit")
    a = ap.parse_args(argv)

    try:
        if a.craft:
            return craft(a.craft)
        if not a.bind or not a.port or not 0 < a.port < 65536:
            ap.error("--bind and --port (1..65535) are required")
        if not 0 < a.lifetime <= 86400:
            ap.error("--lifetime must be in (0, 86400]")
        cfg = load_config(a.config)
    except (ConfigError, ValueError, KeyError, OSError) as e:
        print("foreign_peer: %s" % e, file=sys.stderr)
        return 2

    def stop(signum, frame):
        raise Stop(signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)

    logf = open(a.log, "a") if a.log else sys.stdout
    guard = False
    rc = 0
    peer = None
    try:
        if a.pidfile:
            with open(a.pidfile, "w") as f:
                f.write("%d\n" % os.getpid())
        peer = Peer(a.bind, a.port, cfg, logf, a.mark)
        if not a.no_nft:
            install_guard(a.bind, a.port, a.mark)
            guard = True
        peer.log("ready", None, pid=os.getpid(), bind=a.bind, port=a.port, mark=a.mark,
                 nft_table=None if a.no_nft else "inet " + nft_table_name(a.port),
                 config={k: (v.decode("latin-1") if isinstance(v, bytes) else
                             sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()})
        peer.loop(a.lifetime)
    except Stop as e:
        if peer:
            peer.log("exit", None, why="signal %d" % e.args[0], connections=len(peer.conns))
    except Exception as e:                          # report, clean up, fail
        print("foreign_peer: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        rc = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if guard:
            remove_guard(a.port)
        if a.pidfile:
            try:
                os.unlink(a.pidfile)
            except OSError:
                pass
        if logf is not sys.stdout:
            logf.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
