#!/usr/bin/env python3
"""Privileged integration tests of `tcpprobe time-wait` against the lab's real
Linux server (tests/lab/: port 80 is HTTP/1.0 and closes first, so the server
holds TIME-WAIT; 8005 never closes) and against the lab's foreign peer
(tests/lab/foreign_peer.py on ports 9100-9199: a user-space TCP whose TIME-WAIT
answers and restarts on the probe kinds its configuration names).

    test_time_wait.py --tcpprobe BIN --source-dir DIR NAME     run one test
    test_time_wait.py --list                                   "NAME TIMEOUT" lines (for CMake)

Exit 0 pass, 1 fail, 77 skipped (not root / no network namespaces).  Every
test checks tcpprobe's JSON summary against facts observed in the server
namespace: the segments on the server veth (tcpdump + tshark), the server's
TIME-WAIT sockets (`ss -tan state time-wait`, polled with a bounded number of
tries), its kernel counters (/proc/net/netstat) and, for the RST tests, its
tcp_rfc1337 sysctl (set and restored around the run).  No tcpprobe_ nft
table may outlive a run.  Traffic stays inside the lab namespaces.

The duration and `--test all` runs take about 62 s each (TIME-WAIT is 60 s on
Linux), the foreign-peer duration runs about 45 s (a 20 s TIME-WAIT measured
with one probe per connection): they are separate tests, labelled `slow` as well.
"""

import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import (CLI_IP, CLI_NS, SRV_IF, SRV_IP, SRV_NS, PORT_OPEN,  # noqa: E402
                   Capture, ForeignPeer, Sysctl, TestFailure, format_packets)

PORT_HTTP = PORT_OPEN           # HTTP/1.0: answers, then the server closes first
PORT_NEVER_CLOSE = 8005         # reads until our EOF, never closes
LINUX_TW_ISN_OFFSET = 65537     # tcp_timewait_state_process: tw_snd_nxt + 65535 + 2
# TIME-WAIT is 60 s, but its timer sits in level 3 of the kernel's timer wheel, whose
# granularity is 512 jiffies (2.048 s at HZ=250): it fires 0-2.05 s late (measured
# here: 60.37-62.19 s). The series' bracket runs from its last answered probe to the ACK
# probe whose RST dates the end: the 1 s probe interval plus the first unanswered probe's
# four copies and the wait after them (100 ms each), so +/- 0.75 s around the midpoint.
TW_RES_US = 750_000
TW_MIN_US, TW_MAX_US = 60_000_000 - 1_000_000 + TW_RES_US - 150_000, 62_050_000 + TW_RES_US + 50_000

TESTS = {}


def test(timeout):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        return fn
    return deco


def target(port=PORT_HTTP):
    return "%s:%d" % (SRV_IP, port)


is_number = tplab.is_number
within = tplab.within


# --------------------------------------------------------------------------
# running tcpprobe, reading its summary

check_no_table = tplab.check_no_table
run_json = tplab.run_json


def start_to_files(tp, args, tmp, name):
    """A background run whose stdout and stderr go to files, not pipes: a duration run
    reports every segment of some thirty connections, more than a pipe holds while
    the test is busy sampling ss, and a writer blocked on a full pipe would stall
    tcpprobe's timing."""
    argv = tp.argv(args)
    out = open(os.path.join(tmp, name + ".out"), "w+")
    err = open(os.path.join(tmp, name + ".err"), "w+")
    p = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
    return p, argv, out, err


def finish_from_files(run, timeout):
    p, argv, out, err = run
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
        raise TestFailure("tcpprobe still running %s s after the test's end: %s" % (timeout, " ".join(argv)))
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read())
        f.close()
    return tplab.ProbeResult(argv, p.returncode, texts[0], texts[1], 0.0)


TEST_KEYS = ("test", "isn", "ts", "outcome", "answer", "peer_closed_first", "duration_us",
             "resolution_us", "probes", "retries", "unanswered", "end_confirmed", "new_isn", "isn_distance",
             "time_wait_alive_after", "rounds", "connect")
DURATION_KEYS = ("method", "check", "check_offset_us", "series_last_alive_us", "probe_kind", "probe_kinds",
                 "lower_us", "upper_us", "lifetime")
# Every probe whose answer decides is sent up to five times (--retries: four copies after
# silence).
COPIES = 5


def require_summary(c, r, rc, verdict, ntests=1):
    """The summary of a time-wait run: schema, verdict, exit code, the tests[] entries."""
    c.require(r.parse_error is None, r.parse_error or "")
    s = r.summary()
    c.require(s is not None, "the last stdout line is not a summary object")
    c.eq(r.returncode, rc, "exit code")
    c.eq(s.get("schema"), 1, "summary.schema")
    c.eq(s.get("command"), "time-wait", "summary.command")
    c.eq(s.get("verdict"), verdict, "summary.verdict")
    tests = s.get("tests")
    c.require(isinstance(tests, list) and len(tests) == ntests,
              "summary.tests: expected %d entries, got %r" % (ntests, tests))
    for t in tests:
        missing = [k for k in TEST_KEYS + (DURATION_KEYS if t.get("test") == "duration" else ()) if k not in t]
        c.check(not missing, "summary.tests entry %r lacks %r" % (t.get("test"), missing))
        for k, v in t.items():
            if k.endswith("_us"):
                c.check(v is None or is_number(v), "tests[].%s is not a number or null: %r" % (k, v))
        sport = (t.get("connect") or {}).get("sport")
        c.require(isinstance(sport, int) and 0 < sport < 65536, "tests[].connect.sport: %r" % (sport,))
    tw = s.get("time_wait")
    c.require(isinstance(tw, dict), "summary.time_wait: %r" % (tw,))
    c.eq(tw.get("side"), "peer" if tw.get("observed") else None, "summary.time_wait.side (null when not observed)")
    return s, tests


def sport_of(t):
    return t["connect"]["sport"]


# --------------------------------------------------------------------------
# the wire (capture on the server veth) and the server's TIME-WAIT sockets

def conn_packets(pkts, sport, dport=PORT_HTTP):
    return [p for p in pkts if p.proto == 6 and (
        (p.src == CLI_IP and p.sport == sport and p.dst == SRV_IP and p.dport == dport) or
        (p.src == SRV_IP and p.sport == dport and p.dst == CLI_IP and p.dport == sport))]


def ours(p):
    return p.src == CLI_IP


def theirs(p):
    return p.src == SRV_IP


def first(pkts, pred, start=0):
    for i in range(start, len(pkts)):
        if pred(pkts[i]):
            return i, pkts[i]
    return None, None


def seq_end(p):
    return (p.seq + (p.len or 0) + (1 if p.has("F") else 0) + (1 if p.has("S") else 0)) % 2**32


def seq_after(a, b):
    """a after b in sequence space."""
    return 0 < (a - b) % 2**32 < 2**31


class OldConnection:
    """The first connection on the 4-tuple as the server saw it: its FIN, our FIN,
    its ACK of our FIN (TIME-WAIT starts there), and what came after."""

    def __init__(self, c, pkts):
        self.pkts = pkts
        _, self.our_syn = first(pkts, lambda x: ours(x) and x.flag_str() == "S")
        c.require(self.our_syn is not None, "no SYN from us on the wire")
        i_sfin, self.server_fin = first(pkts, lambda x: theirs(x) and x.has("F"))
        c.require(self.server_fin is not None, "no FIN from the server on the wire")
        i_fin, self.our_fin = first(pkts, lambda x: ours(x) and x.has("F"), i_sfin + 1)
        c.require(self.our_fin is not None, "no FIN from us after the server's on the wire")
        c.eq(self.our_fin.ack, seq_end(self.server_fin), "our FIN acknowledges the server's FIN")
        i_ack, self.tw_ack = first(pkts, lambda x: theirs(x) and x.ack == seq_end(self.our_fin), i_fin + 1)
        c.require(self.tw_ack is not None, "the server never acknowledged our FIN on the wire")
        self.after = pkts[i_ack + 1:]
        # What the TIME-WAIT socket holds: RCV.NXT (after our FIN), SND.NXT (after its FIN).
        self.rcv_nxt = seq_end(self.our_fin)
        self.snd_nxt = seq_end(self.server_fin)
        self.last_tsval = max((x.tsval for x in pkts[:i_ack] if ours(x) and x.tsval is not None), default=None)


def tw_present(sport):
    peer = "%s:%d" % (CLI_IP, sport)
    return [s for s in tplab.time_wait_sockets(SRV_NS, PORT_HTTP) if s[1] == peer]


def check_tw_after(c, sport, present):
    """`ss -tan state time-wait` in the server namespace right after the run."""
    if present:
        c.check(tw_present(sport), "no TIME-WAIT socket for %s:%d in %s after the run (ss): %r"
                % (CLI_IP, sport, SRV_NS, tplab.time_wait_sockets(SRV_NS, PORT_HTTP)))
    else:
        gone = tplab.wait_until(lambda: not tw_present(sport), 1.0)
        c.check(gone, "TIME-WAIT socket for %s:%d still in %s after the run (ss): %r"
                % (CLI_IP, sport, SRV_NS, tw_present(sport)))
        left = tplab.sockets_matching(SRV_NS, local_port=PORT_HTTP, peer_port=sport)
        c.check(not left, "server socket for %s:%d still present after the run: %r" % (CLI_IP, sport, left))


def capture_note(c, pkts):
    c.note("server-veth capture of the connection:\n" + format_packets(pkts))


def one_probe_run(c, tp, tmp, args, rc, outcome):
    """A single-answer test (reuse, rst, fin): run it with a capture on the server
    veth; returns (test entry, packets of its connection, the old connection)."""
    pcap = os.path.join(tmp, "srv.pcap")
    with Capture(SRV_NS, SRV_IF, pcap, bpf="tcp port %d" % PORT_HTTP) as cap:
        r = run_json(c, tp, args)
    s, tests = require_summary(c, r, rc, outcome)
    t = tests[0]
    c.eq(t.get("outcome"), outcome, "tests[0].outcome")
    c.eq(t.get("peer_closed_first"), True, "tests[0].peer_closed_first")
    c.eq((s.get("time_wait") or {}).get("observed"), True, "summary.time_wait.observed")
    pkts = conn_packets(cap.packets(), sport_of(t))
    capture_note(c, pkts)
    return t, pkts, OldConnection(c, pkts)


# --------------------------------------------------------------------------
# 1. duration: 60 s, seen by ss during the run and gone after it

def kinds_of(t):
    return {k.get("kind"): k for k in (t.get("probe_kinds") or [])}


def engine_probes(t):
    return (t.get("lifetime") or {}).get("probes") or []


@test(timeout=120)
def duration(c, tp, tmp):
    args = ["-o", "json", "time-wait", target()]
    pcap = os.path.join(tmp, "srv.pcap")
    with Capture(SRV_NS, SRV_IF, pcap, bpf="tcp port %d" % PORT_HTTP, max_seconds=100) as cap:
        run = start_to_files(tp, args, tmp, "duration")
        samples = tplab.watch_time_wait(SRV_NS, run[0], PORT_HTTP, max_seconds=95)
        r = finish_from_files(run, timeout=30)
        c.note(r.describe())
    check_no_table(c, "after `tcpprobe %s`" % " ".join(args))
    s, tests = require_summary(c, r, 0, "observed")
    t = tests[0]
    sport = sport_of(t)
    c.eq(t.get("test"), "duration", "tests[0].test")
    c.eq(t.get("outcome"), "observed", "tests[0].outcome")
    c.eq(t.get("answer"), "R", "tests[0].answer")
    d = t.get("duration_us")
    within(c, d, TW_MIN_US, TW_MAX_US, "tests[0].duration_us (Linux: 60 s + 0-2.05 s timer slack)")
    within(c, t.get("resolution_us"), TW_RES_US - 50_000, TW_RES_US + 100_000,
           "tests[0].resolution_us (half of: the 1 s probe interval + 4 x 100 ms before the ACK probe)")
    c.eq(t.get("end_confirmed"), True, "tests[0].end_confirmed")
    # The series: FINs without ACK that Linux answers without restarting its timer,
    # confirmed by a connection probed once that was still there near the end.
    c.eq(t.get("method"), "series", "tests[0].method")
    c.eq(t.get("check"), "confirmed", "tests[0].check")
    c.eq(t.get("probe_kind"), "fin-noack", "tests[0].probe_kind")
    k = kinds_of(t)
    c.eq((k.get("fin-noack") or {}).get("answered"), True, "probe_kinds fin-noack answered")
    c.eq((k.get("fin-noack") or {}).get("restarts"), False, "probe_kinds fin-noack restarts")
    c.eq((k.get("retx-fin") or {}).get("answered"), None, "probe_kinds retx-fin answered (never tried)")
    within(c, t.get("check_offset_us"), 45_000_000, t.get("series_last_alive_us") or 0,
           "tests[0].check_offset_us (a connection probed once alive shortly before the series' end)")
    # The first FIN after the end and its four copies unanswered; the ACK probe drew the RST.
    c.eq(t.get("unanswered"), COPIES, "tests[0].unanswered")
    c.eq(t.get("retries"), COPIES - 1, "tests[0].retries")
    # One FIN per second from 0.6 s until the first unanswered one (about the measured
    # duration, which the timer wheel can stretch to 62 s), its 4 copies, the ACK probe.
    secs = int((d or 0) / 1e6)
    within(c, t.get("probes"), secs + 3, secs + 7,
           "tests[0].probes (one FIN per second for the %d s measured, 4 copies, the ACK probe)" % secs)
    tw = s.get("time_wait") or {}
    c.eq(tw.get("observed"), True, "summary.time_wait.observed")
    c.eq(tw.get("duration_us"), d, "summary.time_wait.duration_us")
    print("  tcpprobe: TIME-WAIT %.3f s ± %.3f s, %s probes" % ((d or 0) / 1e6, (t.get("resolution_us") or 0) / 1e6,
                                                            t.get("probes")), flush=True)

    # ss in the server namespace: the 4-tuple in TIME-WAIT during the run, gone after.
    peer = "%s:%d" % (CLI_IP, sport)
    seen = [ts for ts, _, p_ in samples if p_ == peer]
    c.note("ss state time-wait samples for %s: %d, first %.2f s, last %.2f s"
           % (peer, len(seen), min(seen or [0]), max(seen or [0])))
    if c.check(seen, "ss never showed %s:80 <- %s in TIME-WAIT during the run" % (SRV_IP, peer)) and is_number(d):
        span = max(seen) - min(seen)
        c.check(abs(span - d / 1e6) <= 1.5, "ss showed the TIME-WAIT for %.2f s, tcpprobe measured %.3f s"
                % (span, d / 1e6))
    check_tw_after(c, sport, present=False)

    # The wire: FINs without ACK at our old ISS (the SYN's sequence number: out of the
    # window, not a copy of our FIN) >= 600 ms apart, each answered by an ACK until the
    # end; the first one after the end and its copies unanswered, 100 ms apart; then an
    # ACK probe, answered by RST: the end of the bracket (silence alone proves nothing).
    pkts = conn_packets(cap.packets(), sport)
    old = OldConnection(c, pkts)
    probes = [x for x in old.after if ours(x)]
    fins = [x for x in probes if x.flag_str() == "F"]
    c.check(fins and all(x.seq == old.our_syn.seq for x in fins),
            "the duration probes are not FINs without ACK at our ISS %d: %s"
            % (old.our_syn.seq, format_packets(probes[:3])))
    c.eq(len(fins) + 1, t.get("probes"), "FIN probes on the wire + the ACK probe vs tests[0].probes")
    _, confirm = first(old.after, lambda x: ours(x) and x.flag_str() == ".")
    c.require(confirm is not None and fins and confirm.time > fins[-1].time,
              "no ACK probe after the last FIN probe: %s" % confirm)
    answered = []
    for i, f in enumerate(fins):
        nxt = fins[i + 1].time if i + 1 < len(fins) else confirm.time
        ans = [x for x in old.after if theirs(x) and f.time < x.time < nxt]
        answered.append(bool(ans) and all(x.flag_str() == "." and x.ack == old.rcv_nxt for x in ans))
    c.check(len(fins) > COPIES and answered[:-COPIES] == [True] * (len(fins) - COPIES)
            and answered[-COPIES:] == [False] * COPIES,
            "expected every FIN probe but the last four answered by an ACK of RCV.NXT: %r" % answered)
    regular = fins[:len(fins) - COPIES + 1]
    gaps = [b_.time - a_.time for a_, b_ in zip(regular, regular[1:])]
    c.check(gaps and min(gaps) >= 0.6, "FIN probes closer than 600 ms: min gap %.3f s" % min(gaps or [0]))
    copies = [b_.time - a_.time for a_, b_ in zip(fins[-COPIES:], fins[-COPIES + 1:])]
    c.check(copies and all(0.08 <= g <= 0.3 for g in copies), "the copies of the last FIN are not ~100 ms apart: %r" % copies)
    if len(fins) > COPIES:
        last_alive = fins[-COPIES - 1]
        wire_d = ((last_alive.time + confirm.time) / 2 - old.tw_ack.time) * 1e6
        print("  wire (server veth): TIME-WAIT %.3f s" % (wire_d / 1e6), flush=True)
        within(c, d, wire_d - 5_000, wire_d + 5_000,
               "duration_us vs the server-veth capture (%.0f µs ± 5 ms)" % wire_d)
        _, rst = first(old.after, lambda x: theirs(x) and x.time > confirm.time)
        c.check(rst is not None and rst.flag_str() == "R" and rst.seq == confirm.ack,
                "the ACK probe was not answered by a RST at its ACK number: %s" % rst)
    c.check(not [x for x in old.after if ours(x) and x.has("R")], "we sent a RST after the close")

    # The connections probed once: each closed by the server like the series connection,
    # then probed once (one FIN without ACK, answered), at its own offset; none after
    # the series' end was confirmed.
    eng = engine_probes(t)
    c.check(len(eng) >= 10, "only %d connections probed once: %r" % (len(eng), eng))
    all_pkts = cap.packets()
    for e in eng:
        c.eq(e.get("round"), "coarse", "lifetime probe round (no fine round with a confirmed series)")
        alive = e.get("offset_us", 0) < TW_MIN_US
        if alive:
            c.eq(e.get("result"), "alive", "lifetime probe at %.2f s" % (e.get("offset_us", 0) / 1e6))
        mp = conn_packets(all_pkts, e.get("sport"))
        mo = OldConnection(c, mp)
        mine = [x for x in mo.after if ours(x)]
        c.check(mine and mine[0].flag_str() == "F" and (not alive or len(mine) == 1),
                "connection %d probed once: expected one FIN without ACK after its close, got %s"
                % (e.get("sport"), format_packets(mine[:4])))
        if mine:
            # An answer that shows the connection alive dates it at our first copy (the
            # earliest it was certainly there); a RST dates the end at our last copy
            # before it (the listener drops the FIN without ACK; the ACK probe after
            # it draws the RST): both ends of the bracket are the conservative ones.
            probe = mine[0]
            if not alive:
                _, answer = first(mo.after, lambda x: theirs(x) and x.time > mine[0].time)
                before = [x for x in mine if answer is None or x.time < answer.time]
                probe = before[-1] if before else mine[0]
            offset = (probe.time - mo.tw_ack.time) * 1e6
            within(c, e.get("offset_us"), offset - 5_000, offset + 5_000,
                   "lifetime probe offset_us of %d vs the server-veth capture" % e.get("sport"))


# --------------------------------------------------------------------------
# 2. reuse

@test(timeout=30)
def reuse_higher_newer(c, tp, tmp):
    t, pkts, old = one_probe_run(c, tp, tmp, ["time-wait", target(), "--test", "reuse", "--isn", "higher",
                                              "--ts", "newer"], 0, "accepted")
    c.eq(t.get("isn"), "higher", "tests[0].isn")
    c.eq(t.get("ts"), "newer", "tests[0].ts")
    c.eq(t.get("answer"), "S.", "tests[0].answer")
    c.eq(t.get("isn_distance"), LINUX_TW_ISN_OFFSET, "tests[0].isn_distance")
    _, syn = first(old.after, lambda x: ours(x) and x.has("S"))
    c.require(syn is not None, "no new SYN on the wire")
    c.check(seq_after(syn.seq, old.rcv_nxt), "the new SYN's seq %d is not after RCV.NXT %d" % (syn.seq, old.rcv_nxt))
    c.check(syn.tsval is not None and old.last_tsval is not None and seq_after(syn.tsval, old.last_tsval),
            "the new SYN's TSval %r is not newer than our last one %r" % (syn.tsval, old.last_tsval))
    _, sa = first(old.after, lambda x: theirs(x) and x.flag_str() == "S.")
    c.require(sa is not None, "no SYN-ACK from the server on the wire")
    c.eq(sa.ack, seq_end(syn), "SYN-ACK acknowledges the new SYN")
    c.eq((sa.seq - old.snd_nxt) % 2**32, LINUX_TW_ISN_OFFSET,
         "wire: new SYN-ACK seq - (old server FIN seq + 1)")
    c.eq(t.get("new_isn"), sa.seq, "tests[0].new_isn vs the SYN-ACK on the wire")
    _, rst = first(old.after, lambda x: ours(x) and x.has("R"))
    c.check(rst is not None and rst.seq == seq_end(syn), "no cleanup RST at the new SYN's seq + 1: %s" % rst)
    check_tw_after(c, sport_of(t), present=False)


@test(timeout=30)
def reuse_lower_none(c, tp, tmp):
    t, pkts, old = one_probe_run(c, tp, tmp, ["time-wait", target(), "--test", "reuse", "--isn", "lower",
                                              "--ts", "none"], 0, "refused")
    c.eq(t.get("answer"), ".", "tests[0].answer")
    c.eq(t.get("new_isn"), None, "tests[0].new_isn")
    c.eq(t.get("time_wait_alive_after"), True, "tests[0].time_wait_alive_after")
    _, syn = first(old.after, lambda x: ours(x) and x.has("S"))
    c.require(syn is not None, "no new SYN on the wire")
    c.check(seq_after(old.rcv_nxt, syn.seq), "the new SYN's seq %d is not before RCV.NXT %d" % (syn.seq, old.rcv_nxt))
    c.eq(syn.tsval, None, "the new SYN's TSval (--ts none)")
    c.check(not [x for x in pkts if x.tsval is not None], "timestamps on the wire although --ts none")
    _, ans = first(old.after, theirs)
    c.require(ans is not None, "no answer from the server to the new SYN")
    c.check(ans.flag_str() == "." and ans.ack == old.rcv_nxt and ans.seq == old.snd_nxt,
            "the answer is not the TIME-WAIT socket's ACK (seq SND.NXT %d, ack RCV.NXT %d): %s"
            % (old.snd_nxt, old.rcv_nxt, ans))
    check_tw_after(c, sport_of(t), present=True)


@test(timeout=30)
def reuse_higher_older_paws(c, tp, tmp):
    # Linux >= 6.15 counts PAWS rejects in TIME-WAIT as TcpExtPAWSTimewait, older ones as PAWSEstab.
    counters = tplab.netstat_counters(SRV_NS)
    key = "PAWSTimewait" if "PAWSTimewait" in counters else "PAWSEstab"
    before = counters.get(key)
    t, pkts, old = one_probe_run(c, tp, tmp, ["time-wait", target(), "--test", "reuse", "--isn", "higher",
                                              "--ts", "older"], 0, "refused")
    after = tplab.netstat_counters(SRV_NS).get(key)
    c.eq(t.get("answer"), ".", "tests[0].answer")
    c.eq(t.get("time_wait_alive_after"), True, "tests[0].time_wait_alive_after")
    _, syn = first(old.after, lambda x: ours(x) and x.has("S"))
    c.require(syn is not None, "no new SYN on the wire")
    c.check(seq_after(syn.seq, old.rcv_nxt), "the new SYN's seq %d is not after RCV.NXT %d" % (syn.seq, old.rcv_nxt))
    c.check(syn.tsval is not None and old.last_tsval is not None and seq_after(old.last_tsval, syn.tsval),
            "the new SYN's TSval %r is not older than our last one %r" % (syn.tsval, old.last_tsval))
    _, ans = first(old.after, theirs)
    c.check(ans is not None and ans.flag_str() == "." and ans.ack == old.rcv_nxt,
            "the answer is not the TIME-WAIT socket's ACK: %s" % ans)
    if before is not None and after is not None:
        c.check(after - before >= 1, "TcpExt%s in %s did not grow (%d -> %d): not a PAWS reject"
                % (key, SRV_NS, before, after))
    check_tw_after(c, sport_of(t), present=True)


# --------------------------------------------------------------------------
# 3. rst: RFC 1337 off / on

def rst_run(c, tp, tmp, rfc1337, outcome):
    with Sysctl(SRV_NS, "tcp_rfc1337", rfc1337):
        t, pkts, old = one_probe_run(c, tp, tmp, ["time-wait", target(), "--test", "rst"], 0, outcome)
        alive = bool(tw_present(sport_of(t)))
    _, rst = first(old.after, lambda x: ours(x) and x.has("R"))
    c.require(rst is not None, "no RST from us after the close")
    c.eq(rst.seq, old.rcv_nxt, "our RST's seq (RCV.NXT of the TIME-WAIT socket: in window)")
    _, probe = first(old.after, lambda x: ours(x) and x.flag_str() == "." and x.time > rst.time)
    c.require(probe is not None, "no follow-up ACK probe after our RST")
    c.check(not [x for x in old.after if theirs(x) and rst.time < x.time < probe.time],
            "the server answered our RST")
    _, ans = first(old.after, lambda x: theirs(x) and x.time > probe.time)
    c.require(ans is not None, "no answer to the follow-up probe")
    return t, ans, old, alive


@test(timeout=30)
def rst_rfc1337_off_kills(c, tp, tmp):
    t, ans, old, alive = rst_run(c, tp, tmp, 0, "killed")
    c.eq(t.get("answer"), "R", "tests[0].answer")
    c.eq(t.get("time_wait_alive_after"), False, "tests[0].time_wait_alive_after")
    c.eq(ans.flag_str(), "R", "wire: the server's answer to the follow-up ACK")
    c.check(not alive, "TIME-WAIT still in ss although tcp_rfc1337=0 and the RST was in window")
    check_tw_after(c, sport_of(t), present=False)


@test(timeout=30)
def rst_rfc1337_on_ignored(c, tp, tmp):
    t, ans, old, alive = rst_run(c, tp, tmp, 1, "ignored")
    c.eq(t.get("answer"), ".", "tests[0].answer")
    c.eq(t.get("time_wait_alive_after"), True, "tests[0].time_wait_alive_after")
    c.check(ans.flag_str() == "." and ans.ack == old.rcv_nxt, "wire: the answer is not the TIME-WAIT ACK: %s" % ans)
    c.check(alive, "TIME-WAIT gone from ss although tcp_rfc1337=1")
    check_tw_after(c, sport_of(t), present=True)


# --------------------------------------------------------------------------
# 4. fin: our FIN again is re-ACKed

@test(timeout=30)
def fin_reacked(c, tp, tmp):
    t, pkts, old = one_probe_run(c, tp, tmp, ["time-wait", target(), "--test", "fin"], 0, "re-acked")
    c.eq(t.get("answer"), ".", "tests[0].answer")
    _, fin = first(old.after, lambda x: ours(x) and x.has("F"))
    c.require(fin is not None, "no repeated FIN from us on the wire")
    c.eq(fin.flag_str(), "F.", "flags of the repeated FIN")
    c.eq(fin.seq, old.our_fin.seq, "the repeated FIN's seq (our old FIN's)")
    _, ans = first(old.after, lambda x: theirs(x) and x.time > fin.time)
    c.check(ans is not None and ans.flag_str() == "." and ans.ack == old.rcv_nxt,
            "the repeated FIN was not re-ACKed (ack RCV.NXT %d): %s" % (old.rcv_nxt, ans))
    check_tw_after(c, sport_of(t), present=True)


# --------------------------------------------------------------------------
# 5. --test all: one table (text), seven concluded tests (JSON), run side by side

ALL_EXPECTED = [
    ("duration", None, None, "observed"),
    ("reuse", "higher", "newer", "accepted"),
    ("reuse", "lower", "none", "refused"),
    ("reuse", "lower", "newer", "accepted"),
    ("reuse", "higher", "older", "refused"),
    ("rst", None, None, "killed"),
    ("fin", None, None, "re-acked"),
]
ALL_ROWS = ["duration", "reuse higher/ts newer", "reuse lower/ts none", "reuse lower/ts newer",
            "reuse higher/ts older", "rst", "fin"]


@test(timeout=150)
def all_tests(c, tp, tmp):
    with Sysctl(SRV_NS, "tcp_rfc1337", 0):
        runs = [start_to_files(tp, ["-o", "json", "time-wait", target(), "--test", "all"], tmp, "all-json"),
                start_to_files(tp, ["time-wait", target(), "--test", "all"], tmp, "all-text")]
        rj = finish_from_files(runs[0], timeout=120)
        rt = finish_from_files(runs[1], timeout=30)
    c.note(rj.describe())
    c.note(rt.describe())
    check_no_table(c, "after two `tcpprobe time-wait --test all` runs")

    s, tests = require_summary(c, rj, 0, "observed", ntests=7)
    got = [(t.get("test"), t.get("isn"), t.get("ts"), t.get("outcome")) for t in tests]
    c.eq(got, ALL_EXPECTED, "JSON tests[] (test, isn, ts, outcome)")
    c.eq(len({sport_of(t) for t in tests}), 7, "seven connections with seven source ports")
    dur = tests[0]
    within(c, dur.get("duration_us"), TW_MIN_US, TW_MAX_US, "tests[0].duration_us")
    c.eq((s.get("time_wait") or {}).get("duration_us"), dur.get("duration_us"), "summary.time_wait.duration_us")
    for t in tests:
        c.eq(t.get("peer_closed_first"), True, "peer_closed_first of %s" % t.get("test"))
        if t.get("outcome") == "accepted":
            c.eq(t.get("isn_distance"), LINUX_TW_ISN_OFFSET, "isn_distance of reuse %s/%s" % (t.get("isn"), t.get("ts")))

    # Text: exactly one table, a row per test with its outcome, the TIME-WAIT line.
    c.eq(rt.returncode, 0, "exit code of the text run")
    out = rt.stdout.splitlines()
    heads = [i for i, l in enumerate(out) if re.match(r"^test\s+answer\s+outcome\s+detail\s*$", l)]
    c.require(len(heads) == 1, "expected one table header in the text output, found %d" % len(heads))
    c.eq(sum(1 for l in out if l.startswith("--- %s time-wait (all) ---" % target())), 1, "table titles")
    rows = out[heads[0] + 1:heads[0] + 8]
    for row, name, (_, _, _, outcome) in zip(rows, ALL_ROWS, ALL_EXPECTED):
        c.check(row.startswith(name + " ") and re.search(r"\s%s\s" % re.escape(outcome), row + " "),
                "table row for %r with outcome %r expected, got %r" % (name, outcome, row))
    tail = [l for l in out if l.startswith("TIME-WAIT on the peer:")]
    c.check(len(tail) == 1 and re.match(r"^TIME-WAIT on the peer: observed, (\d+\.\d\d) s$", tail[0]),
            "TIME-WAIT line: %r" % tail)
    if tail:
        m = re.search(r"(\d+\.\d\d) s$", tail[0])
        if m:
            within(c, float(m.group(1)), TW_MIN_US / 1e6, TW_MAX_US / 1e6, "TIME-WAIT seconds in the text summary")


# --------------------------------------------------------------------------
# 6. peers without a TIME-WAIT, bad input

@test(timeout=30)
def never_close_no_time_wait(c, tp, tmp):
    t0 = time.monotonic()
    r = run_json(c, tp, ["time-wait", target(PORT_NEVER_CLOSE), "--max-wait", "1s"])
    wall = time.monotonic() - t0
    # The peer never closes: no TIME-WAIT could be set up (which loss alone could also
    # cause), not a peer proven to hold none.
    s, tests = require_summary(c, r, 2, "incomplete")
    t = tests[0]
    c.eq(t.get("outcome"), "incomplete", "tests[0].outcome")
    c.eq(t.get("peer_closed_first"), False, "tests[0].peer_closed_first")
    c.eq((s.get("time_wait") or {}).get("observed"), False, "summary.time_wait.observed")
    c.eq(t.get("duration_us"), None, "tests[0].duration_us")
    c.check(wall < 5, "the run took %.1f s with --max-wait 1s" % wall)
    sport = sport_of(t)
    gone = tplab.wait_until(
        lambda: not tplab.sockets_matching(SRV_NS, local_port=PORT_NEVER_CLOSE, peer_port=sport), 1.0)
    c.check(gone, "server socket for %s:%d still present after our cleanup RST: %r"
            % (CLI_IP, sport, tplab.sockets_matching(SRV_NS, local_port=PORT_NEVER_CLOSE, peer_port=sport)))


@test(timeout=30)
def no_tw_buckets_reset(c, tp, tmp):
    """tcp_max_tw_buckets=0: the server cannot hold even the FIN-WAIT-2 of its
    orphaned socket (Linux keeps that as a timewait bucket too), so the socket is
    gone once we ACK its FIN and our FIN gets a RST: outcome reset, no TIME-WAIT."""
    pcap = os.path.join(tmp, "srv.pcap")
    with Sysctl(SRV_NS, "tcp_max_tw_buckets", 0):
        with Capture(SRV_NS, SRV_IF, pcap, bpf="tcp port %d" % PORT_HTTP) as cap:
            r = run_json(c, tp, ["time-wait", target()])
        s, tests = require_summary(c, r, 1, "reset")
        sport = sport_of(tests[0])
        c.check(not tw_present(sport), "a TIME-WAIT socket despite tcp_max_tw_buckets=0")
    t = tests[0]
    c.eq(t.get("outcome"), "reset", "tests[0].outcome")
    c.eq(t.get("peer_closed_first"), True, "tests[0].peer_closed_first")
    c.eq(t.get("duration_us"), None, "tests[0].duration_us")
    c.eq(t.get("probes"), 0, "tests[0].probes")
    c.eq((s.get("time_wait") or {}).get("observed"), False, "summary.time_wait.observed")
    pkts = conn_packets(cap.packets(), sport)
    capture_note(c, pkts)
    i_fin, fin = first(pkts, lambda x: ours(x) and x.has("F"))
    c.require(fin is not None, "no FIN from us on the wire")
    _, rst = first(pkts, lambda x: theirs(x) and x.has("R"), i_fin + 1)
    c.check(rst is not None and rst.seq == fin.ack, "our FIN was not answered by a RST at its ACK number: %s" % rst)
    c.check(not [x for x in pkts[i_fin + 1:] if ours(x)], "we sent something after the RST")


BAD_INPUTS = [
    (["time-wait", target(), "--probe-interval", "100ms"], "100ms"),
    (["time-wait", target(), "--max-duration", "1s"], "1s"),
    (["time-wait", target(), "--sport", "40123"], "--sport"),
    (["time-wait", target(), "--test", "reuse", "--isn", "sideways"], "sideways"),
    (["time-wait", target(), "--test", "nope"], "nope"),
]


@test(timeout=60)
def bad_input(c, tp, tmp):
    for args, needle in BAD_INPUTS:
        r = tp.run(args, timeout=15)
        what = "tcpprobe %s" % " ".join(args)
        ok = c.eq(r.returncode, 64, "%s: exit code" % what)
        lines = r.stderr.splitlines()
        ok &= c.check(len(lines) == 1 and lines[0].strip(),
                      "%s: expected exactly one stderr line, got %d" % (what, len(lines)))
        ok &= c.check(needle in r.stderr, "%s: error does not name %r" % (what, needle))
        ok &= c.eq(r.stdout, "", "%s: stdout" % what)
        if not ok:
            c.note(r.describe())
    check_no_table(c, "after the bad-input cases")


# --------------------------------------------------------------------------
# 7. other stacks: the lab's foreign peer, whose TIME-WAIT answers and restarts on
#    the probe kinds its configuration names. A 20 s TIME-WAIT keeps the runs short.

FOREIGN_TW = 20.0
FOREIGN_EPS_US = 100_000        # the peer's timers run in Python: a few ms late at most


def foreign_bracket(c, t, widest_us):
    """tests[0]'s bracket [lower_us, upper_us]: it must hold the configured TIME-WAIT
    and be at most widest_us wide."""
    lo, hi = t.get("lower_us"), t.get("upper_us")
    c.require(is_number(lo) and is_number(hi), "tests[0].lower_us/upper_us: %r, %r" % (lo, hi))
    tw_us = FOREIGN_TW * 1e6
    c.check(lo <= tw_us + FOREIGN_EPS_US and hi >= tw_us - FOREIGN_EPS_US,
            "bracket [%.3f, %.3f] s does not hold the configured %.1f s" % (lo / 1e6, hi / 1e6, FOREIGN_TW))
    c.check(hi - lo <= widest_us, "bracket [%.3f, %.3f] s is wider than %.1f s" % (lo / 1e6, hi / 1e6, widest_us / 1e6))
    return lo, hi


def foreign_duration(c, tp, port, config, outcome, kind, answered, restarts):
    """One duration run against the foreign peer: the bracket must hold the configured
    TIME-WAIT and be at most 2 s wide, the method one probe per connection (the series
    extends what it measures), the probe kinds as configured."""
    with ForeignPeer(port, dict(config, tw_duration=FOREIGN_TW)) as peer:
        t0 = time.monotonic()
        r = run_json(c, tp, ["time-wait", "%s:%d" % (SRV_IP, port)], timeout=100)
        wall = time.monotonic() - t0
        expired = peer.events("tw-expire")
        restarted = peer.events("tw-restart")
        killed = peer.events("tw-killed")
    c.note("foreign peer config: %r" % config)
    s, tests = require_summary(c, r, 0, outcome)
    t = tests[0]
    c.eq(t.get("method"), "one-probe-per-connection", "tests[0].method")
    c.eq(t.get("check"), "extended", "tests[0].check (the series connection outlived the connections probed once)")
    c.eq(t.get("probe_kind"), kind, "tests[0].probe_kind")
    k = kinds_of(t)
    for name, want in answered.items():
        c.eq((k.get(name) or {}).get("answered"), want, "probe_kinds %s answered" % name)
    c.eq((k.get(kind) or {}).get("restarts"), restarts, "probe_kinds %s restarts" % kind)
    lo, hi = foreign_bracket(c, t, 2_000_000)
    tw_us = FOREIGN_TW * 1e6
    within(c, t.get("duration_us"), tw_us - 1_000_000 - FOREIGN_EPS_US, tw_us + 1_000_000 + FOREIGN_EPS_US,
           "tests[0].duration_us")
    c.check(wall <= 2.5 * FOREIGN_TW + 10, "the run took %.1f s for a %.0f s TIME-WAIT" % (wall, FOREIGN_TW))
    print("  tcpprobe: TIME-WAIT between %.3f and %.3f s (%s connections probed once), %.1f s wall"
          % (lo / 1e6, hi / 1e6, (t.get("lifetime") or {}).get("probed"), wall), flush=True)
    # The peer's own log: each connection probed once saw one probe kind once, so at
    # most one restart; the ones that answered "alive" were really in TIME-WAIT then.
    eng = engine_probes(t)
    by_port = {}
    for e in restarted:
        by_port[e.get("cport")] = by_port.get(e.get("cport"), 0) + 1
    for e in eng:
        c.check(by_port.get(e.get("sport"), 0) <= 1, "connection %d probed once restarted TIME-WAIT %d times"
                % (e.get("sport"), by_port.get(e.get("sport"), 0)))
    c.check(by_port.get(sport_of(t), 0) >= 5, "the series connection restarted the peer's TIME-WAIT only %d times"
            % by_port.get(sport_of(t), 0))
    lasted = [e.get("lasted") for e in expired if e.get("cport") in {x.get("sport") for x in eng}]
    c.check(lasted and all(abs(x - FOREIGN_TW) < 0.5 for x in lasted if x is not None),
            "the peer's TIME-WAIT of the connections probed once did not last %.0f s: %r" % (FOREIGN_TW, lasted))
    c.check(not killed, "a probe killed the peer's TIME-WAIT: %r" % killed)
    return t


@test(timeout=100)
def foreign_retx_fin_only(c, tp, tmp):
    """RFC 9293 §3.10.7.4 and nothing more: the TIME-WAIT ACKs only a retransmitted
    FIN and restarts its timer on it; a closed port answers RST."""
    t = foreign_duration(c, tp, 9151, {"tw_answers": ["retx-fin"], "tw_restarts": ["retx-fin"]},
                         "observed", "retx-fin", {"fin-noack": False, "retx-fin": True}, True)
    c.eq(t.get("answer"), "R", "tests[0].answer")
    c.eq(t.get("end_confirmed"), True, "tests[0].end_confirmed")


@test(timeout=100)
def foreign_every_fin_restarts(c, tp, tmp):
    """Every FIN is answered and restarts TIME-WAIT: the FIN-without-ACK series keeps the
    state alive as long as it probes; the connections probed once find it out."""
    t = foreign_duration(c, tp, 9152, {"tw_answers": ["fin-noack", "retx-fin"], "tw_restarts": ["any-fin"]},
                         "observed", "fin-noack", {"fin-noack": True}, True)
    c.eq(t.get("answer"), "R", "tests[0].answer")


@test(timeout=100)
def foreign_silent_end(c, tp, tmp):
    """A closed port that answers nothing: the end is the first silence (after the
    probe's copies and the ACK probes), reported as silent-end, not as gone."""
    t = foreign_duration(c, tp, 9153, {"tw_answers": ["retx-fin"], "tw_restarts": ["retx-fin"], "closed_reply": "silent"},
                         "silent-end", "retx-fin", {"fin-noack": False, "retx-fin": True}, True)
    c.eq(t.get("answer"), None, "tests[0].answer")
    c.eq(t.get("end_confirmed"), False, "tests[0].end_confirmed")
    silent = [e for e in engine_probes(t) if e.get("result") == "silent"]
    c.check(silent and all(e.get("segments") == 2 * COPIES for e in silent),
            "silent connections probed once: expected %d probe segments each (%d copies and an ACK probe after each): %r"
            % (2 * COPIES, COPIES, silent))


@test(timeout=130)
def foreign_loss(c, tp, tmp):
    """10 % random loss each way on the path (the lab's path namespace): every deciding
    probe is sent again, so the verdict stays right; the bracket may be wider than 2 s
    when a connection probed once lost its answers, never wrong."""
    port = 9154
    config = {"tw_duration": FOREIGN_TW, "tw_answers": ["retx-fin"], "tw_restarts": ["retx-fin"]}
    with ForeignPeer(port, config):
        with tplab.Loss(percent_to_server=10, percent_to_client=10,
                        match={"to_server": "tcp dport %d" % port, "to_client": "tcp sport %d" % port}) as loss:
            r = run_json(c, tp, ["time-wait", "%s:%d" % (SRV_IP, port)], timeout=120)
            counts = loss.counts()
    c.note("loss counters: %r" % counts)
    s, tests = require_summary(c, r, 0, "observed")
    t = tests[0]
    c.eq(t.get("method"), "one-probe-per-connection", "tests[0].method")
    lo, hi = foreign_bracket(c, t, 4_000_000)
    c.check(sum(d.get("dropped", 0) for d in counts.values()) > 0, "the loss rules dropped nothing: %r" % counts)
    print("  tcpprobe under 10 %% loss: TIME-WAIT between %.3f and %.3f s, %s retries on the series connection"
          % (lo / 1e6, hi / 1e6, t.get("retries")), flush=True)


# --------------------------------------------------------------------------

if __name__ == "__main__":
    sys.exit(tplab.main(TESTS))
