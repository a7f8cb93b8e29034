#!/usr/bin/env python3
"""Privileged integration tests of `tcpprobe teardown` and `tcpprobe half-close`
against the lab (tests/lab/: servers.py ports 80, 8001-8005, closed port 81).

    test_close.py --tcpprobe BIN --source-dir DIR NAME     run one test
    test_close.py --list                                   "NAME TIMEOUT" lines (for CMake)

Exit 0 pass, 1 fail, 77 skipped (not root / no network namespaces).  Every
test checks tcpprobe's JSON summary against facts observed elsewhere: the
segments on the client veth (tcpdump + tshark), the server's socket table
(`ss -tan` in the server namespace, polled with a bounded number of tries while
tcpprobe runs) and the nft ruleset of the client namespace (no tcpprobe_ table
may outlive a run).  Traffic stays inside the lab namespaces.
"""

import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import (CLI_IF, CLI_IP, CLI_NS, SRV_IP, SRV_NS, PORT_CLOSED, PORT_OPEN,  # noqa: E402
                   Capture, TestFailure, format_packets, state_names, state_duration_us)

PORT_HTTP = PORT_OPEN           # HTTP/1.0: answers, then the server closes first
PORT_CLOSE_LATE = 8001          # closes 0.5 s after our EOF
PORT_CLOSE_NOW = 8002           # closes the moment it reads our EOF
PORT_SEND_AFTER_EOF = 8003      # 5000 x "x" after our EOF, then closes
PORT_RST = 8004                 # answers the request line, 0.1 s later RST (SO_LINGER 0)
PORT_NEVER_CLOSE = 8005         # stays in CLOSE-WAIT

HTTP_REQUEST = r"GET / HTTP/1.0\r\n\r\n"   # tcpprobe's --request escapes
LINE_REQUEST = r"hi\n"
SEND_AFTER_EOF_BYTES = 5000
RST_REPLY_LEN = len(b"OK\r\n")

TESTS = {}


def test(timeout):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        return fn
    return deco


def target(port):
    return "%s:%d" % (SRV_IP, port)


is_number = tplab.is_number
within = tplab.within


# --------------------------------------------------------------------------
# running tcpprobe, reading its summary

check_no_table = tplab.check_no_table
run_json = tplab.run_json


def start_json(tp, args):
    return tp.start(["-o", "json"] + list(args))


def finish(c, p, argv, args, timeout=20):
    r = tplab.Tcpprobe.finish(p, argv, timeout=timeout)
    c.note(r.describe())
    check_no_table(c, "after `tcpprobe %s`" % " ".join(args))
    return r


def spans_match_events(c, r, s, side, key):
    """The summary's state list must be the trace's state events of that side
    (from ESTABLISHED on), and each duration_us the gap to the next event."""
    evs = [e for e in r.events("state") if e.get("side") == side]
    tos = [e.get("to") for e in evs]
    if "ESTABLISHED" not in tos:
        return
    i = tos.index("ESTABLISHED")
    evs = evs[i:]
    spans = s.get(key) or []
    if not c.check(state_names(spans) == [e.get("to") for e in evs],
                   "summary.%s %r disagrees with the %s state events of the trace %r"
                   % (key, state_names(spans), side, [e.get("to") for e in evs])):
        return
    # The local states our own FIN enters (FIN-WAIT-1, LAST-ACK) start in the summary at
    # the FIN's capture, in the trace when tcpprobe decided to send it: those two spans
    # may differ by the send-to-capture delay (a few ms at most on a busy machine).
    fin_entered = ("FIN-WAIT-1", "LAST-ACK") if side == "local" else ()
    for n, (sp, ev) in enumerate(zip(spans, evs)):
        if n + 1 < len(evs):
            want = evs[n + 1].get("t_us") - ev.get("t_us")
            got = sp.get("duration_us")
            slack = 10000 if (sp.get("state") in fin_entered or evs[n + 1].get("to") in fin_entered) else 2
            c.check(is_number(got) and abs(got - want) <= slack,
                    "summary.%s[%d] (%s) duration_us %r, the trace's state events are %r µs apart"
                    % (key, n, sp.get("state"), got, want))
        else:
            c.eq(sp.get("duration_us"), None, "summary.%s last span (%s) duration_us"
                 % (key, sp.get("state")))


def require_summary(c, r, rc, verdict, command="teardown", pattern=None, mode=None):
    c.require(r.parse_error is None, r.parse_error or "")
    s = r.summary()
    c.require(s is not None, "the last stdout line is not a summary object")
    c.eq(r.returncode, rc, "exit code")
    c.eq(s.get("command"), command, "summary.command")
    c.eq(s.get("verdict"), verdict, "summary.verdict")
    if pattern is not None:
        c.eq(s.get("pattern"), pattern, "summary.pattern")
    if mode is not None:
        c.eq(s.get("mode"), mode, "summary.mode")
    sport = (s.get("connect") or {}).get("sport")
    c.require(isinstance(sport, int) and 0 < sport < 65536, "summary.connect.sport: %r" % (sport,))
    if (s.get("connect") or {}).get("verdict") == "open":
        spans_match_events(c, r, s, "local", "local_states")
        spans_match_events(c, r, s, "peer", "peer_states")
    return s, sport


# --------------------------------------------------------------------------
# the wire (capture on the client veth)

def conn_packets(pkts, sport, dport):
    """Segments of one connection, in capture order."""
    return [p for p in pkts if p.proto == 6 and (
        (p.src == CLI_IP and p.sport == sport and p.dst == SRV_IP and p.dport == dport) or
        (p.src == SRV_IP and p.sport == dport and p.dst == CLI_IP and p.dport == sport))]


def ours(p):
    return p.src == CLI_IP


def theirs(p):
    return p.src == SRV_IP


def first(pkts, pred, start=0):
    """(index, packet) of the first packet from `start` on that satisfies pred."""
    for i in range(start, len(pkts)):
        if pred(pkts[i]):
            return i, pkts[i]
    return None, None


def seq_end(p):
    """Sequence number just after p (payload, SYN and FIN each count)."""
    return (p.seq + (p.len or 0) + (1 if p.has("F") else 0) + (1 if p.has("S") else 0)) % 2**32


def wire_close_pattern(pkts):
    """What the peer's first segment after our first FIN says: '3-way' (FIN+ACK of
    our FIN), '4-way' (pure ACK of our FIN), else a description."""
    i, fin = first(pkts, lambda p: ours(p) and p.has("F"))
    if fin is None:
        return "no FIN from us", None
    _, ans = first(pkts, theirs, i + 1)
    if ans is None:
        return "no segment from the peer after our FIN", fin
    if ans.ack == seq_end(fin) and ans.has("."):
        if ans.has("F"):
            return "3-way", fin
        if not ans.has("R") and not (ans.len or 0):
            return "4-way", fin
    return "first peer segment after our FIN: %s" % ans, fin


def capture_note(c, pkts):
    c.note("client-veth capture of the connection:\n" + format_packets(pkts))


# --------------------------------------------------------------------------
# 1. active close, 4-way: 8001 closes 0.5 s after our FIN

@test(timeout=40)
def active_four_way(c, tp, tmp):
    args = ["teardown", target(PORT_CLOSE_LATE), "--request", LINE_REQUEST, "--idle", "200ms",
            "--time-wait", "1s"]
    pcap = os.path.join(tmp, "cli.pcap")
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        p, argv = start_json(tp, args)
        samples = tplab.watch_sockets(SRV_NS, p, PORT_CLOSE_LATE, max_seconds=10)
        r = finish(c, p, argv, args)
    s, sport = require_summary(c, r, 0, "clean", pattern="4-way", mode="active")
    local, peer = s.get("local_states"), s.get("peer_states")
    c.eq(state_names(local), ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"],
         "local states")
    c.eq(state_names(peer), ["ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"],
         "peer states (inferred)")
    within(c, state_duration_us(local, "ESTABLISHED"), 150_000, 350_000,
           "ESTABLISHED duration_us (--idle 200ms after the request)")
    within(c, state_duration_us(local, "TIME-WAIT"), 850_000, 1_150_000,
           "our TIME-WAIT duration_us (--time-wait 1s)")
    within(c, s.get("peer_close_wait_us"), 400_000, 600_000,
           "peer_close_wait_us (server closes 0.5 s after reading our FIN)")
    within(c, s.get("our_fin_to_peer_fin_us"), 400_000, 600_000, "our_fin_to_peer_fin_us")
    c.eq(s.get("combined_fin_ack"), False, "combined_fin_ack")
    c.eq(s.get("bytes_after_our_fin"), 0, "bytes_after_our_fin")

    # The server's socket table while tcpprobe sat in FIN-WAIT-2: CLOSE-WAIT.
    mine = [(t, st) for t, st, _, peer_ in samples if peer_ == "%s:%d" % (CLI_IP, sport)]
    c.note("ss samples in %s for %s:%d (s since start, state): %r" % (SRV_NS, CLI_IP, sport, mine))
    seen = [st for _, st in mine]
    c.check("ESTAB" in seen, "server socket never seen ESTAB during the --idle 200ms")
    c.check("CLOSE-WAIT" in seen, "server socket never seen in CLOSE-WAIT while we were in FIN-WAIT-2")
    if "ESTAB" in seen and "CLOSE-WAIT" in seen:
        c.check(max(t for t, st in mine if st == "ESTAB") < min(t for t, st in mine if st == "CLOSE-WAIT"),
                "server socket ESTAB again after CLOSE-WAIT: %r" % mine)
        cw = [t for t, st in mine if st == "CLOSE-WAIT"]
        c.check(max(cw) - min(cw) >= 0.3, "server CLOSE-WAIT observed only for %.3f s, expected ≈ 0.5 s"
                % (max(cw) - min(cw)))
    c.check(set(seen) <= {"ESTAB", "CLOSE-WAIT", "LAST-ACK"}, "unexpected server states %r" % set(seen))
    left = tplab.sockets_matching(SRV_NS, local_port=PORT_CLOSE_LATE, peer_port=sport)
    c.check(not left, "server socket for %s:%d still present after the run: %r" % (CLI_IP, sport, left))

    # The wire: our FIN, the peer's pure ACK of it, ≈ 0.5 s later its FIN, our ACK.
    pkts = conn_packets(cap.packets(), sport, PORT_CLOSE_LATE)
    capture_note(c, pkts)
    pattern, fin = wire_close_pattern(pkts)
    c.eq(pattern, "4-way", "close pattern on the wire")
    if fin is not None:
        _, ack = first(pkts, lambda x: theirs(x) and x.ack == seq_end(fin))
        _, pfin = first(pkts, lambda x: theirs(x) and x.has("F"))
        if ack is not None and pfin is not None:
            print("  observed on the wire: peer ACK of our FIN after %.3f ms (tcpprobe: %s µs), "
                  "its FIN after %.3f ms (tcpprobe: %s µs)"
                  % ((ack.time - fin.time) * 1e3, s.get("our_fin_to_peer_ack_us"),
                     (pfin.time - fin.time) * 1e3, s.get("our_fin_to_peer_fin_us")), flush=True)
            within(c, (pfin.time - fin.time) * 1e6, 400_000, 600_000, "wire: our FIN -> peer FIN (µs)")
            # Both are capture timestamps of the same packets on the same veth.
            for key, pkt in (("our_fin_to_peer_ack_us", ack), ("our_fin_to_peer_fin_us", pfin)):
                wire_us = (pkt.time - fin.time) * 1e6
                within(c, s.get(key), wire_us - 200, wire_us + 200,
                       "%s vs the tcpdump capture (%.1f µs ± 200)" % (key, wire_us))
            _, oack = first(pkts, lambda x: ours(x) and x.ack == seq_end(pfin))
            c.check(oack is not None and not oack.has("F") and not oack.has("R"),
                    "no pure ACK of the peer's FIN from us on the wire")
        else:
            c.check(False, "the capture lacks the peer's ACK or FIN")
    c.check(not [x for x in pkts if x.has("R")], "RST on the wire during a clean 4-way close")


# --------------------------------------------------------------------------
# 2. active close vs 8002 (the server closes the moment it reads our FIN)

@test(timeout=60)
def active_close_at_once(c, tp, tmp):
    """Linux holds the ACK of our FIN (delayed ACK); the server's close() at once
    then sends its FIN with that ACK: a 3-way close. The reported pattern must
    match the wire in every run."""
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["teardown", target(PORT_CLOSE_NOW), "--request", LINE_REQUEST, "--time-wait", "200ms"]
    runs = []
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        for _ in range(3):
            r = run_json(c, tp, args)
            s, sport = require_summary(c, r, 0, "clean", mode="active")
            runs.append((s, sport))
    allpkts = cap.packets()
    observed = []
    for s, sport in runs:
        pkts = conn_packets(allpkts, sport, PORT_CLOSE_NOW)
        pattern, _ = wire_close_pattern(pkts)
        observed.append(pattern)
        if not c.eq(s.get("pattern"), pattern, "summary.pattern vs the wire (sport %d)" % sport):
            capture_note(c, pkts)
        names = state_names(s.get("local_states"))
        if pattern == "3-way":
            c.eq(s.get("combined_fin_ack"), True, "combined_fin_ack (3-way on the wire)")
            c.eq(names, ["ESTABLISHED", "FIN-WAIT-1", "TIME-WAIT", "CLOSED"], "local states of a 3-way close")
            c.eq(s.get("our_fin_to_peer_ack_us"), s.get("our_fin_to_peer_fin_us"),
                 "our_fin_to_peer_ack_us == our_fin_to_peer_fin_us in a 3-way close")
        elif pattern == "4-way":
            c.eq(s.get("combined_fin_ack"), False, "combined_fin_ack (4-way on the wire)")
            c.eq(names, ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"],
                 "local states of a 4-way close")
        within(c, state_duration_us(s.get("local_states"), "TIME-WAIT"), 150_000, 350_000,
               "TIME-WAIT duration_us (--time-wait 200ms)")
    print("  observed patterns vs 8002: %r" % observed, flush=True)
    c.check("3-way" in observed, "no 3-way close in 3 runs against 8002: %r" % observed)


# --------------------------------------------------------------------------
# 3. passive close vs the HTTP/1.0 server: the peer ends in TIME-WAIT

FETCH = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
buf = b""
while len(buf) < 1 << 20:
    d = s.recv(65536)
    if not d:
        break
    buf += d
s.close()
print(len(buf))
"""


def http_response_length():
    """Length of the lab's HTTP/1.0 answer, fetched with a kernel socket."""
    r = tplab.in_cli(["timeout", "10", sys.executable, "-c", FETCH, SRV_IP, str(PORT_HTTP)],
                     timeout=15, check=True)
    return int(r.stdout.strip())


@test(timeout=40)
def passive_http(c, tp, tmp):
    expected_len = http_response_length()
    c.note("HTTP response length from a kernel-socket fetch: %d" % expected_len)
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["teardown", target(PORT_HTTP), "--mode", "passive", "--request", HTTP_REQUEST,
            "--idle", "300ms"]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        r = run_json(c, tp, args)
    s, sport = require_summary(c, r, 0, "clean", pattern="passive", mode="passive")
    local = s.get("local_states")
    c.eq(state_names(local), ["ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"], "local states")
    c.eq(state_names(s.get("peer_states")), ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"],
         "peer states (inferred)")
    within(c, state_duration_us(local, "CLOSE-WAIT"), 250_000, 450_000,
           "CLOSE-WAIT duration_us (--idle 300ms)")
    c.eq(s.get("bytes_before_peer_fin"), expected_len, "bytes_before_peer_fin (the whole HTTP response)")
    c.eq(s.get("bytes_after_peer_fin"), 0, "bytes_after_peer_fin")

    tw = [st for st, _, _ in tplab.sockets_matching(SRV_NS, local_port=PORT_HTTP, peer_port=sport)]
    c.eq(tw, ["TIME-WAIT"], "server socket state for %s:%d after the run (ss -tan)" % (CLI_IP, sport))

    pkts = conn_packets(cap.packets(), sport, PORT_HTTP)
    capture_note(c, pkts)
    i_pfin, pfin = first(pkts, lambda x: theirs(x) and x.has("F"))
    i_fin, fin = first(pkts, lambda x: ours(x) and x.has("F"))
    c.require(pfin is not None and fin is not None, "capture lacks the peer's FIN or ours")
    c.check(i_pfin < i_fin, "the peer's FIN is not before ours on the wire")
    c.eq(sum(x.len or 0 for x in pkts[:i_pfin + 1] if theirs(x)), expected_len,
         "payload bytes from the server up to its FIN on the wire")
    c.eq(fin.ack, seq_end(pfin), "our FIN acknowledges the peer's FIN")
    within(c, (fin.time - pfin.time) * 1e6, 250_000, 450_000, "wire: peer FIN -> our FIN (µs, --idle 300ms)")
    _, last_ack = first(pkts, lambda x: theirs(x) and x.ack == seq_end(fin), i_fin + 1)
    c.check(last_ack is not None, "the peer never acknowledged our FIN on the wire")


# --------------------------------------------------------------------------
# 4. simultaneous close: our FIN before our ACK of the peer's FIN

@test(timeout=40)
def simultaneous_http(c, tp, tmp):
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["teardown", target(PORT_HTTP), "--mode", "simultaneous", "--request", HTTP_REQUEST,
            "--time-wait", "500ms"]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        r = run_json(c, tp, args)
    s, sport = require_summary(c, r, 0, "clean", pattern="simultaneous", mode="simultaneous")
    c.eq(s.get("peer_passed_closing"), True, "peer_passed_closing")
    names = state_names(s.get("local_states"))
    c.check("CLOSING" in names, "local states lack CLOSING: %r" % names)
    c.eq(names, ["ESTABLISHED", "FIN-WAIT-1", "CLOSING", "TIME-WAIT", "CLOSED"], "local states")
    c.check("CLOSING" in state_names(s.get("peer_states")), "peer states lack CLOSING: %r"
            % state_names(s.get("peer_states")))
    within(c, state_duration_us(s.get("local_states"), "TIME-WAIT"), 400_000, 650_000,
           "TIME-WAIT duration_us (--time-wait 500ms)")

    tw = [st for st, _, _ in tplab.sockets_matching(SRV_NS, local_port=PORT_HTTP, peer_port=sport)]
    c.eq(tw, ["TIME-WAIT"], "server socket state for %s:%d after the run (ss -tan)" % (CLI_IP, sport))

    pkts = conn_packets(cap.packets(), sport, PORT_HTTP)
    capture_note(c, pkts)
    i_pfin, pfin = first(pkts, lambda x: theirs(x) and x.has("F"))
    c.require(pfin is not None, "no FIN from the peer on the wire")
    i_fin, fin = first(pkts, lambda x: ours(x) and x.has("F"))
    c.require(fin is not None, "no FIN from us on the wire")
    i_ack, _ = first(pkts, lambda x: ours(x) and x.has(".") and x.ack == seq_end(pfin))
    c.require(i_ack is not None, "we never acknowledged the peer's FIN on the wire")
    c.check(i_pfin < i_fin < i_ack, "order on the wire: peer FIN #%s, our FIN #%s, our ACK of its FIN #%s"
            % (i_pfin, i_fin, i_ack))
    c.check(fin.ack != seq_end(pfin), "our FIN already acknowledges the peer's FIN (ack %s)" % fin.ack)
    # What makes the peer pass through CLOSING: it acknowledged our FIN while
    # its own FIN was still unacknowledged.
    i_pack, _ = first(pkts, lambda x: theirs(x) and x.ack == seq_end(fin), i_fin + 1)
    c.check(i_pack is not None and i_pack < i_ack,
            "the peer's ACK of our FIN (#%s) is not before our ACK of its FIN (#%s)" % (i_pack, i_ack))


# --------------------------------------------------------------------------
# 5. abort: in-window RST, then a probe ACK answered by RST

@test(timeout=40)
def abort_never_close(c, tp, tmp):
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["teardown", target(PORT_NEVER_CLOSE), "--mode", "abort", "--idle", "400ms"]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        p, argv = start_json(tp, args)
        samples = tplab.watch_sockets(SRV_NS, p, PORT_NEVER_CLOSE, max_seconds=10)
        r = finish(c, p, argv, args)
    s, sport = require_summary(c, r, 0, "clean", pattern="abort", mode="abort")
    c.eq(s.get("abort_confirmed"), True, "abort_confirmed")
    mine = [st for _, st, _, peer_ in samples if peer_ == "%s:%d" % (CLI_IP, sport)]
    c.check("ESTAB" in mine, "server socket never seen ESTAB before our RST: %r" % mine)
    left = tplab.sockets_matching(SRV_NS, local_port=PORT_NEVER_CLOSE, peer_port=sport)
    c.check(not left, "server socket for %s:%d still present after the abort: %r" % (CLI_IP, sport, left))

    pkts = conn_packets(cap.packets(), sport, PORT_NEVER_CLOSE)
    capture_note(c, pkts)
    i_rst, rst = first(pkts, lambda x: ours(x) and x.has("R"))
    c.require(rst is not None, "no RST from us on the wire")
    isn = (s.get("connect") or {}).get("isn")
    c.eq(rst.seq, (isn + 1) % 2**32 if isinstance(isn, int) else None, "our RST's seq (ISS+1 = SND.NXT)")
    c.check(not [x for x in pkts[:i_rst] if ours(x) and x.has("F")], "we sent a FIN before the abort RST")
    i_probe, probe = first(pkts, lambda x: ours(x) and x.flag_str() == ".", i_rst + 1)
    c.require(probe is not None, "no probe ACK from us after our RST")
    i_ans, ans = first(pkts, theirs, i_probe + 1)
    c.require(ans is not None, "no answer from the server to the probe ACK")
    c.check(ans.has("R") and not ans.has("."), "the answer to the probe ACK is not a bare RST: %s" % ans)
    c.eq(ans.seq, probe.ack, "the server's RST seq equals the probe ACK's ack (RFC 9293 §3.10.7.1)")
    c.check(not [x for x in pkts[i_rst + 1:i_probe] if theirs(x)],
            "the server answered our RST itself: %s" % format_packets([x for x in pkts[i_rst + 1:i_probe]
                                                                        if theirs(x)]))
    within(c, (probe.time - rst.time) * 1e3, 50, 400, "wire: our RST -> probe ACK (ms)")


# --------------------------------------------------------------------------
# 6. active mode, but the server closes first

@test(timeout=30)
def active_peer_closed_first(c, tp, tmp):
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["teardown", target(PORT_HTTP), "--request", HTTP_REQUEST]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        r = run_json(c, tp, args)
    s, sport = require_summary(c, r, 1, "differs", pattern="peer-closed-first", mode="active")
    c.check(any("closed first" in str(f) for f in s.get("findings") or []),
            "no finding says the peer closed first: %r" % s.get("findings"))
    pkts = conn_packets(cap.packets(), sport, PORT_HTTP)
    capture_note(c, pkts)
    i_pfin, _ = first(pkts, lambda x: theirs(x) and x.has("F"))
    i_fin, _ = first(pkts, lambda x: ours(x) and x.has("F"))
    c.check(i_pfin is not None and (i_fin is None or i_pfin < i_fin),
            "the wire does not show the peer's FIN before ours (peer #%s, ours #%s)" % (i_pfin, i_fin))


# --------------------------------------------------------------------------
# 7. the peer resets (8004: answer, 0.1 s, RST) before our --idle 1s ends

@test(timeout=30)
def active_peer_resets(c, tp, tmp):
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["teardown", target(PORT_RST), "--request", LINE_REQUEST, "--idle", "1s"]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        r = run_json(c, tp, args)
    s, sport = require_summary(c, r, 1, "differs", pattern="reset", mode="active")
    c.eq(s.get("peer_reset"), True, "peer_reset")
    c.eq(s.get("bytes_before_our_fin"), RST_REPLY_LEN, "bytes_before_our_fin (the server's reply)")
    c.eq(state_names(s.get("local_states")), ["ESTABLISHED", "CLOSED"], "local states")
    pkts = conn_packets(cap.packets(), sport, PORT_RST)
    capture_note(c, pkts)
    _, prst = first(pkts, lambda x: theirs(x) and x.has("R"))
    c.require(prst is not None, "no RST from the server on the wire")
    _, reply = first(pkts, lambda x: theirs(x) and (x.len or 0) > 0)
    if reply is not None:
        within(c, (prst.time - reply.time) * 1e3, 80, 500, "wire: server reply -> its RST (ms)")
    c.check(not [x for x in pkts if ours(x) and (x.has("F") or x.has("R"))],
            "we sent a FIN or RST although the peer reset first:\n"
            + format_packets([x for x in pkts if ours(x) and (x.has("F") or x.has("R"))]))
    left = tplab.sockets_matching(SRV_NS, local_port=PORT_RST, peer_port=sport)
    c.check(not left, "server socket still present after its RST: %r" % left)


# --------------------------------------------------------------------------
# 8. half-close: the peer keeps sending after our FIN

@test(timeout=30)
def half_close_send_after_eof(c, tp, tmp):
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["half-close", target(PORT_SEND_AFTER_EOF), "--request", LINE_REQUEST, "--time-wait", "300ms"]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        r = run_json(c, tp, args)
    s, sport = require_summary(c, r, 0, "clean", command="half-close", mode="half-close")
    c.eq(s.get("bytes_after_our_fin"), SEND_AFTER_EOF_BYTES, "bytes_after_our_fin")
    c.check(isinstance(s.get("segments_after_our_fin"), int) and s.get("segments_after_our_fin") >= 1,
            "segments_after_our_fin: %r" % s.get("segments_after_our_fin"))
    c.eq(s.get("bytes_before_our_fin"), 0, "bytes_before_our_fin")
    c.check(s.get("pattern") in ("4-way", "3-way"), "summary.pattern %r" % s.get("pattern"))
    c.eq(state_names(s.get("local_states"))[-2:], ["TIME-WAIT", "CLOSED"], "last local states")

    pkts = conn_packets(cap.packets(), sport, PORT_SEND_AFTER_EOF)
    capture_note(c, pkts)
    i_fin, fin = first(pkts, lambda x: ours(x) and x.has("F"))
    c.require(fin is not None, "no FIN from us on the wire")
    i_data, _ = first(pkts, lambda x: ours(x) and (x.len or 0) > 0)
    c.check(i_data is not None and i_data < i_fin, "our request is not before our FIN on the wire")
    after = [x for x in pkts[i_fin + 1:] if theirs(x) and (x.len or 0) > 0]
    c.eq(sum(x.len for x in after), SEND_AFTER_EOF_BYTES, "payload bytes from the server after our FIN")
    c.eq(len(after), s.get("segments_after_our_fin"), "server data segments after our FIN on the wire")
    _, pfin = first(pkts, lambda x: theirs(x) and x.has("F"), i_fin + 1)
    c.require(pfin is not None, "no FIN from the server on the wire")
    _, last = first(pkts, lambda x: ours(x) and x.ack == seq_end(pfin))
    c.check(last is not None, "we never acknowledged the server's FIN on the wire")
    c.check(not [x for x in pkts if x.has("R")], "RST on the wire in a clean half-close")


# --------------------------------------------------------------------------
# 9. half-close against a peer that never closes: --max-wait, cleanup RST

@test(timeout=30)
def half_close_max_wait(c, tp, tmp):
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["half-close", target(PORT_NEVER_CLOSE), "--request", LINE_REQUEST, "--max-wait", "1s"]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        p, argv = start_json(tp, args)
        samples = tplab.watch_sockets(SRV_NS, p, PORT_NEVER_CLOSE, max_seconds=10)
        r = finish(c, p, argv, args)
    s, sport = require_summary(c, r, 2, "incomplete", command="half-close", pattern="incomplete")
    c.check(any("--max-wait" in str(f) for f in s.get("findings") or []),
            "no finding mentions --max-wait: %r" % s.get("findings"))
    mine = [st for _, st, _, peer_ in samples if peer_ == "%s:%d" % (CLI_IP, sport)]
    c.check("CLOSE-WAIT" in mine, "server socket never seen in CLOSE-WAIT during the run: %r" % mine)
    left = tplab.wait_until(
        lambda: not tplab.sockets_matching(SRV_NS, local_port=PORT_NEVER_CLOSE, peer_port=sport), 1.0)
    c.check(left, "server socket for %s:%d still present after our cleanup RST: %r"
            % (CLI_IP, sport, tplab.sockets_matching(SRV_NS, local_port=PORT_NEVER_CLOSE, peer_port=sport)))
    c.eq(state_names(s.get("local_states"))[-1:], ["CLOSED"],
         "last local state in the summary (after the cleanup RST)")

    pkts = conn_packets(cap.packets(), sport, PORT_NEVER_CLOSE)
    capture_note(c, pkts)
    i_fin, fin = first(pkts, lambda x: ours(x) and x.has("F"))
    c.require(fin is not None, "no FIN from us on the wire")
    _, rst = first(pkts, lambda x: ours(x) and x.has("R"), i_fin + 1)
    c.require(rst is not None, "no cleanup RST from us after our FIN on the wire")
    c.eq(rst.seq, seq_end(fin), "cleanup RST seq (just after our FIN)")
    _, syn = first(pkts, lambda x: ours(x) and x.has("S"))
    if syn is not None:
        within(c, rst.time - syn.time, 0.9, 1.5, "wire: SYN -> cleanup RST (s, --max-wait 1s)")
    c.check(not [x for x in pkts if theirs(x) and x.has("F")], "the never-closing server sent a FIN")


@test(timeout=30)
def passive_max_wait(c, tp, tmp):
    """Passive mode against 8001, which waits for *our* EOF: the peer never closes
    first, so --max-wait ends the run with a cleanup RST."""
    pcap = os.path.join(tmp, "cli.pcap")
    args = ["teardown", target(PORT_CLOSE_LATE), "--mode", "passive", "--max-wait", "1s"]
    with Capture(CLI_NS, CLI_IF, pcap) as cap:
        r = run_json(c, tp, args)
    s, sport = require_summary(c, r, 2, "incomplete", pattern="incomplete", mode="passive")
    c.check(any("--max-wait" in str(f) for f in s.get("findings") or []),
            "no finding mentions --max-wait: %r" % s.get("findings"))
    c.eq(state_names(s.get("local_states"))[-1:], ["CLOSED"],
         "last local state in the summary (after the cleanup RST)")
    left = tplab.wait_until(
        lambda: not tplab.sockets_matching(SRV_NS, local_port=PORT_CLOSE_LATE, peer_port=sport), 1.0)
    c.check(left, "server socket for %s:%d still present after our cleanup RST" % (CLI_IP, sport))
    pkts = conn_packets(cap.packets(), sport, PORT_CLOSE_LATE)
    capture_note(c, pkts)
    c.check(not [x for x in pkts if x.has("F")], "a FIN on the wire although nobody closed")
    _, ack = first(pkts, lambda x: ours(x) and x.flag_str() == ".")
    _, rst = first(pkts, lambda x: ours(x) and x.has("R"))
    c.require(rst is not None and ack is not None, "no handshake ACK or no cleanup RST from us on the wire")
    c.eq(rst.seq, ack.seq, "cleanup RST seq (SND.NXT)")
    within(c, rst.time - ack.time, 0.9, 1.5, "wire: handshake ACK -> cleanup RST (s, --max-wait 1s)")


# --------------------------------------------------------------------------
# 10. closed port, usage errors

BAD_INPUTS = [
    (["teardown", target(PORT_HTTP), "--mode", "bogus"], "bogus"),
    (["teardown", target(PORT_HTTP), "--request", r"\q"], r"\q"),
    (["half-close", target(PORT_SEND_AFTER_EOF), "--request", r"\q"], r"\q"),
    (["teardown", target(PORT_HTTP), "--idle", "soon"], "soon"),
    (["half-close", target(PORT_SEND_AFTER_EOF), "--max-wait", "never"], "never"),
]


@test(timeout=60)
def closed_port_and_bad_input(c, tp, tmp):
    for cmd in ("teardown", "half-close"):
        r = run_json(c, tp, [cmd, target(PORT_CLOSED)])
        s, _ = require_summary(c, r, 1, "closed", command=cmd)
        ans = (s.get("connect") or {}).get("answer") or {}
        c.check("R" in str(ans.get("flags")), "%s: connect.answer.flags should be a RST: %r" % (cmd, ans))
        c.eq(s.get("local_states"), [], "%s: local_states of a refused connection" % cmd)

    pcap = os.path.join(tmp, "cli.pcap")
    windows = []
    with Capture(CLI_NS, CLI_IF, pcap, bpf="tcp") as cap:
        for args, needle in BAD_INPUTS:
            t0 = time.time()
            r = tp.run(args, timeout=15)
            windows.append((" ".join(args), t0, time.time()))
            what = "tcpprobe %s" % " ".join(args)
            ok = c.eq(r.returncode, 64, "%s: exit code" % what)
            lines = r.stderr.splitlines()
            ok &= c.check(len(lines) == 1 and lines[0].strip(),
                          "%s: expected exactly one stderr line, got %d" % (what, len(lines)))
            ok &= c.check(needle in r.stderr, "%s: error does not name the bad value %r" % (what, needle))
            ok &= c.eq(r.stdout, "", "%s: stdout" % what)
            if not ok:
                c.note(r.describe())
    check_no_table(c, "after the bad-input cases")
    for p in cap.packets():
        cases = [w[0] for w in windows if w[1] - 0.05 <= (p.time or 0) <= w[2] + 0.05]
        c.check(False, "TCP packet on the wire during bad-input case %s: %s" % (cases or "?", p))


# --------------------------------------------------------------------------
# 11. JSON Lines

def check_json_lines(c, r, command, target_, mode):
    lines = r.json_lines()
    c.require(r.parse_error is None, r.parse_error or "")
    c.require(len(lines) >= 2, "expected events and a summary, got %d lines" % len(lines))
    c.check(all(isinstance(o, dict) for o in lines), "every line must be a JSON object")
    types = set()
    for n, o in enumerate(lines[:-1], 1):
        types.add(o.get("type"))
        c.check(isinstance(o.get("type"), str), "event line %d has no \"type\": %r" % (n, o))
        c.check(o.get("type") != "summary", "summary before the last line (line %d)" % n)
        c.check(is_number(o.get("t_us")) and o.get("t_us") >= 0,
                "event line %d has no non-negative number \"t_us\": %r" % (n, o))
    ts = [o.get("t_us") for o in lines[:-1] if is_number(o.get("t_us"))]
    c.check(ts == sorted(ts), "event t_us not in order: %r" % ts)
    c.check({"segment", "state"} <= types, "event types %r lack segment/state" % types)
    s = lines[-1]
    c.eq(s.get("type"), "summary", "last line type")
    c.eq(s.get("schema"), 1, "summary.schema")
    c.eq(s.get("command"), command, "summary.command")
    c.eq(s.get("target"), target_, "summary.target")
    c.eq(s.get("mode"), mode, "summary.mode")
    c.check(s.get("verdict") in ("clean", "differs", "incomplete"), "summary.verdict %r" % s.get("verdict"))
    c.check(isinstance(s.get("pattern"), str) and s.get("pattern"), "summary.pattern %r" % s.get("pattern"))
    for key in ("local_states", "peer_states"):
        spans = s.get(key)
        c.check(isinstance(spans, list) and spans, "summary.%s: %r" % (key, spans))
        for sp in spans or []:
            c.check(isinstance(sp.get("state"), str), "summary.%s entry without state: %r" % (key, sp))
            d = sp.get("duration_us")
            c.check(d is None or (is_number(d) and d >= 0), "summary.%s duration_us %r" % (key, d))
    for k, v in s.items():
        if k.endswith("_us"):
            c.check(v is None or is_number(v), "summary.%s is not a number or null: %r" % (k, v))
    for key in ("findings",):
        c.check(isinstance(s.get(key), list), "summary.%s is not a list" % key)


@test(timeout=40)
def json_output(c, tp, tmp):
    cases = [
        (["teardown", target(PORT_CLOSE_NOW), "--request", LINE_REQUEST, "--time-wait", "200ms"],
         "teardown", "active"),
        (["teardown", target(PORT_HTTP), "--mode", "passive", "--request", HTTP_REQUEST],
         "teardown", "passive"),
        (["half-close", target(PORT_SEND_AFTER_EOF), "--request", LINE_REQUEST, "--time-wait", "200ms"],
         "half-close", "half-close"),
    ]
    for args, command, mode in cases:
        r = run_json(c, tp, args)
        check_json_lines(c, r, command, args[1], mode)
        c.eq(r.returncode, 0, "exit code of %s" % " ".join(args))


# --------------------------------------------------------------------------

if __name__ == "__main__":
    sys.exit(tplab.main(TESTS))
