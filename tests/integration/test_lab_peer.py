#!/usr/bin/env python3
"""Privileged tests of the lab's own tools: the foreign TCP peer
(tests/lab/foreign_peer.py) and the nft loss helpers of tplab.py (Loss,
DropNth).  They are what later tests build on to show tcpprobe a non-Linux
stack and a lossy path, so they are checked here against the wire.

    test_lab_peer.py --tcpprobe BIN --source-dir DIR NAME   run one test
    test_lab_peer.py --list                                 "NAME TIMEOUT" lines (for CMake)

Exit 0 pass, 1 fail, 77 skipped (not root / no network namespaces).

Ground truth: tcpdump on the veth ends, the foreign peer's JSON event log,
nft rule counters.  Loss is injected on the path (the bridge in the lab's
path namespace), so the sender's veth capture shows every packet it sent and
the receiver's veth capture lacks the dropped ones.  tcpprobe is only used as a traffic source: nothing here asserts on
its output.  Every wait is bounded; every table, capture and peer process is
removed by a context manager, also when a check fails.  Traffic stays inside
the lab namespaces.
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import (CLI_IF, CLI_IP, CLI_NS, PATH_NS, SRV_IF, SRV_IP, SRV_NS,  # noqa: E402
                   Capture, DropNth, ForeignPeer, Loss, NftTable, format_packets)

PORT_ECHO = 7
PORT_HTTP = 80
PORT_CLOSED = tplab.PORT_CLOSED
PEER_TW, PEER_SYNACK, PEER_FIN, PEER_POLICY = 9101, 9102, 9103, 9104
HTTP_REQUEST = "GET / HTTP/1.0\r\n\r\n"
FOREIGN_REPLY = "HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nforeign\n"   # foreign_peer default
SLACK = 0.1                      # wire timing vs the configured schedule (s)

TESTS = {}


def test(timeout):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        return fn
    return deco


# --------------------------------------------------------------------------
# a kernel TCP client in the client namespace

CLIENT = r"""
import errno, json, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
request = json.loads(sys.argv[3]).encode("latin-1")
connect_timeout, mode = float(sys.argv[4]), sys.argv[5]
out = {"connected": False}
s = socket.socket()
s.settimeout(connect_timeout)
t0 = time.monotonic()
out["t0"] = t0
try:
    s.connect((host, port))
    out.update(connected=True, sport=s.getsockname()[1], connect_s=time.monotonic() - t0)
    s.settimeout(15)
    if request:
        s.sendall(request)
    if mode == "shut":
        s.shutdown(socket.SHUT_WR)
        out["shut_t"] = time.monotonic()
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            out["eof"] = True
            out["eof_t"] = time.monotonic()
            break
        data += chunk
        if mode == "echo" and len(data) >= len(request):
            break
    out["reply"] = data.decode("latin-1")
except OSError as e:
    out.update(errno=e.errno, error=errno.errorcode.get(e.errno, str(e)),
               elapsed=time.monotonic() - t0)
    try:
        out.setdefault("sport", s.getsockname()[1])
    except OSError:
        pass
s.close()
print(json.dumps(out), flush=True)
"""


def kernel_client(c, port, request="", connect_timeout=5.0, mode="read"):
    """connect() from the client namespace to SRV_IP:port, send `request`, then
    read until EOF (mode "read"), shut down our side first ("shut"), or read
    back len(request) bytes ("echo"). Returns the client's JSON result."""
    r = tplab.run(tplab.ns_cmd(CLI_NS, ["timeout", "40", sys.executable, "-c", CLIENT, SRV_IP,
                                        str(port), json.dumps(request), str(connect_timeout), mode]),
                  timeout=45)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise tplab.TestFailure("kernel client printed no result: exit %s\n%s%s"
                                % (r.returncode, r.stdout, r.stderr))
    c.note("kernel client to port %d: %r" % (port, out))
    return out


# --------------------------------------------------------------------------
# helpers

def sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def from_port(pkts, port, dport=None):
    return [p for p in pkts if p.src == SRV_IP and p.sport == port
            and (dport is None or p.dport == dport)]


def to_port(pkts, port, sport=None):
    return [p for p in pkts if p.src == CLI_IP and p.dport == port
            and (sport is None or p.sport == sport)]


def synacks(pkts):
    return [p for p in pkts if p.has("S") and p.has(".")]


def gaps(pkts):
    return [round(b.time - a.time, 6) for a, b in zip(pkts, pkts[1:])]


def near(value, want, slack=SLACK):
    return tplab.is_number(value) and abs(value - want) <= slack


def check_gaps(c, got, want, what, slack=SLACK):
    c.check(len(got) == len(want) and all(near(g, w, slack) for g, w in zip(got, want)),
            "%s: gaps %r s, expected %r s (each within %.3f s)" % (what, got, want, slack))


def peer_note(c, peer):
    c.note("foreign peer log (%s):\n%s\nstderr: %s"
           % (peer.log_path, tplab._indent(peer.log_text()), peer.stderr() or "(empty)"))


def check_peer_gone(c, peer):
    c.check(not peer.running(), "the foreign peer is still running")
    tables = tplab.nft_tables(SRV_NS)
    c.check(not [t for t in tables if "tpforeign_" in t],
            "a tpforeign_ nft table is left in %s: %r" % (SRV_NS, tables))


def client_guard(port):
    """Every RST from the client namespace to SRV_IP:port is dropped there (in
    output, so the client-side capture does not show it either). Used where a
    RST from the client side would end the server state under test: the
    kernel's answer to the peer's ACK of a hand-made probe (it would end the
    peer's TIME-WAIT), tcpprobe's cleanup RST, or the kernel's RST to a SYN-ACK
    once tcpprobe (and its own guard) is gone. RSTs we craft on purpose carry
    the mark tplab.FOREIGN_MARK and pass."""
    return NftTable(CLI_NS, "tplabpeer_guard",
                    "  chain out {\n    type filter hook output priority raw; policy accept;\n"
                    "    ip daddr %s tcp dport %d tcp flags & rst == rst meta mark != 0x%x counter drop "
                    "comment \"kernel-rst\"\n  }" % (SRV_IP, port, tplab.FOREIGN_MARK))


# --------------------------------------------------------------------------
# 1. kernel client vs the foreign peer: the peer closes first, TIME-WAIT 3 s

@test(timeout=40)
def peer_time_wait(c, tp, tmp):
    cfg = {"tw_duration": 3.0}
    with client_guard(PEER_TW) as guard, \
            ForeignPeer(PEER_TW, cfg, log_path=os.path.join(tmp, "peer.log")) as peer, \
            Capture(CLI_NS, CLI_IF, os.path.join(tmp, "cli.pcap"), bpf="tcp port %d" % PEER_TW) as cap:
        try:
            cl = kernel_client(c, PEER_TW, HTTP_REQUEST)
            c.require(cl.get("connected"), "the kernel client could not connect: %r" % cl)
            c.eq(cl.get("reply"), FOREIGN_REPLY, "reply read by the kernel client")
            c.eq(cl.get("eof"), True, "the kernel client saw EOF (the peer's FIN)")
            sport = cl.get("sport")
            tw = peer.wait_event("tw-enter", 3.0, cport=sport)
            c.require(tw, "the peer never entered TIME-WAIT for port %s" % sport)
            fin_seq, snd_nxt, rcv_nxt = tw["client_fin_seq"], tw["snd_nxt"], tw["rcv_nxt"]
            c.eq(rcv_nxt, (fin_seq + 1) % 2**32, "tw-enter: rcv_nxt = client FIN seq + 1")
            probe = dict(sport=sport, dport=PEER_TW, flags="FA", seq=fin_seq, ack=snd_nxt)
            sleep_until(tw["t"] + 1.0)
            p1 = tplab.send_segment(CLI_NS, CLI_IP, SRV_IP, **probe)
            sleep_until(tw["t"] + 5.0)
            p2 = tplab.send_segment(CLI_NS, CLI_IP, SRV_IP, **probe)
            time.sleep(0.3)
            c.note("probes: %r %r; client guard counters %r" % (p1, p2, guard.counters()))
        finally:
            peer_note(c, peer)
    check_peer_gone(c, peer)
    pkts = cap.packets()
    c.note("client-side capture:\n" + format_packets(pkts))

    # The peer's ground truth: answer at +1 s (retx-fin), restart, expiry 3 s later.
    ans = peer.events("tw-answer", cport=sport)
    c.check(len(ans) == 1 and ans[0].get("kind") == "retx-fin" and near(ans[0]["t"] - tw["t"], 1.0, 0.3),
            "peer tw-answer events %r: expected one retx-fin answer ≈ 1 s after tw-enter" % ans)
    rs = peer.events("tw-restart", cport=sport)
    c.check(len(rs) == 1 and rs[0].get("kind") == "retx-fin",
            "peer tw-restart events %r: expected one (retx-fin restarts the timer)" % rs)
    exp = peer.events("tw-expire", cport=sport)
    c.check(len(exp) == 1 and near(exp[0].get("lasted"), 3.0, 0.1),
            "peer tw-expire events %r: expected one, 3 s after the restart" % exp)
    if exp and rs:
        c.check(near(exp[0]["t"] - tw["t"], 4.0, 0.35), "TIME-WAIT ended %.3f s after tw-enter, "
                "expected ≈ 4 s (restarted at 1 s)" % (exp[0]["t"] - tw["t"]))
    rst_ev = peer.events("rst", cport=sport)
    c.check(len(rst_ev) == 1 and rst_ev[0].get("why") == "no-connection",
            "peer rst events %r: expected one closed-port RST" % rst_ev)

    # The wire (client veth).
    ours = to_port(pkts, PEER_TW, sport)
    theirs = from_port(pkts, PEER_TW, sport)
    fins_out = [p for p in ours if p.has("F") and p.seq == fin_seq]
    c.require(len(fins_out) == 3, "client FINs with seq %d on the wire: %d, expected 3 "
              "(the kernel's and two probes)" % (fin_seq, len(fins_out)))
    c.check(len([p for p in theirs if p.has("F")]) == 1, "the peer's FIN is not on the wire exactly once")
    for n, probe_pkt in enumerate(fins_out[1:], 1):
        after = [p for p in theirs if 0 <= p.time - probe_pkt.time <= 0.1]
        if n == 1:
            c.check(len(after) == 1 and after[0].flag_str() == "." and after[0].seq == snd_nxt
                    and after[0].ack == rcv_nxt,
                    "probe 1 (TIME-WAIT): expected one ACK seq %d ack %d within 100 ms, got:\n%s"
                    % (snd_nxt, rcv_nxt, format_packets(after)))
        else:
            c.check(len(after) == 1 and after[0].flag_str() == "R" and after[0].seq == snd_nxt,
                    "probe 2 (closed): expected one RST seq %d within 100 ms, got:\n%s"
                    % (snd_nxt, format_packets(after)))
    c.eq(len([p for p in theirs if p.has("R")]), 1, "RSTs from the peer's port on the wire")


# --------------------------------------------------------------------------
# 2. SYN-ACK schedule 3 s, 6 s, then RST; tcpprobe retransmit as the client

@test(timeout=75)
def peer_synack_schedule(c, tp, tmp):
    cfg = {"synack_gaps": [3.0, 6.0], "synack_end": "rst"}
    # client_guard: the peer's schedule runs to its end whatever tcpprobe does
    # (its cleanup RST, or the kernel's RST after it exits, never reach the peer).
    with client_guard(PEER_SYNACK), \
            ForeignPeer(PEER_SYNACK, cfg, log_path=os.path.join(tmp, "peer.log")) as peer, \
            Capture(CLI_NS, CLI_IF, os.path.join(tmp, "cli.pcap"),
                    bpf="tcp port %d" % PEER_SYNACK) as cap:
        try:
            r = tp.run(["-o", "json", "retransmit", "%s:%d" % (SRV_IP, PEER_SYNACK),
                        "--count", "1", "--max-wait", "40s"], timeout=60)
            c.note(r.describe())
            # The RST is due 21 s after the first SYN-ACK; wait for it even if
            # tcpprobe ended sooner.
            peer.wait_event("gave-up", 25.0)
            time.sleep(0.2)
        finally:
            peer_note(c, peer)
    check_peer_gone(c, peer)
    pkts = cap.packets()
    c.note("client-side capture:\n" + format_packets(pkts))
    syns = [p for p in to_port(pkts, PEER_SYNACK) if p.flag_str() == "S"]
    c.require(syns, "no SYN to port %d on the wire" % PEER_SYNACK)
    c.eq(len({p.sport for p in syns}), 1, "source ports of tcpprobe's SYNs (--count 1)")
    sport = syns[0].sport
    theirs = from_port(pkts, PEER_SYNACK, sport)
    resends = peer.events("synack-resend", cport=sport)
    c.note("SYNs from tcpprobe: %d; SYN-ACKs the peer resent for a repeated SYN: %d"
           % (len(syns), len(resends)))
    sched = [e["t"] for e in peer.events("synack", "synack-retx", cport=sport)]
    c.eq(len(sched), 3, "SYN-ACK copies in the peer's log")
    # SYN-ACKs on the wire that are schedule copies (not answers to a repeated SYN).
    resend_t = [e["t"] for e in resends]
    sa = synacks(theirs)
    c.eq(len(sa), 3 + len(resends), "SYN-ACKs on the client veth (3 copies + answers to repeated SYNs)")
    c.check(len({p.seq for p in sa}) == 1, "SYN-ACK seqs differ: %r" % [p.seq for p in sa])
    # A wire copy belongs to the schedule when a scheduled copy was logged at
    # (about) the same moment: both clocks are compared through the first copy.
    if sa and sched and not resends:
        check_gaps(c, gaps(sa), [3.0, 6.0], "SYN-ACK copies on the client veth")
    elif sa and sched:
        off = sa[0].time - sched[0]
        copies = [p for p in sa if not any(abs(p.time - off - t) < 0.02 for t in resend_t)]
        check_gaps(c, gaps(copies), [3.0, 6.0], "SYN-ACK copies on the client veth")
    rsts = [p for p in theirs if p.has("R")]
    c.require(len(rsts) == 1, "RSTs from the peer on the wire: %d, expected 1:\n%s"
              % (len(rsts), format_packets(rsts)))
    if sa:
        c.check(near(rsts[0].time - sa[0].time, 21.0, 0.15),
                "the peer's RST came %.3f s after the first SYN-ACK, expected 21 s (9 s + 2 × 6 s)"
                % (rsts[0].time - sa[0].time))
        c.eq(rsts[0].seq, (sa[0].seq + 1) % 2**32, "RST seq (ISS + 1)")
    # tcpprobe's ACKs are liveness probes only: one byte far outside the window, which
    # the peer answers with an ACK and which complete nothing.
    acks = [p for p in to_port(pkts, PEER_SYNACK, sport) if p.has(".") and not p.has("R")]
    c.check(all(p.len == 1 and sa and ((p.ack - sa[0].seq) % 2**32) == 1 for p in acks),
            "tcpprobe sent ACKs that are not 1-byte liveness probes:\n" + format_packets(acks))
    c.eq(peer.events("established", cport=sport), [], "the peer's log: the handshake never completed")


# --------------------------------------------------------------------------
# 3. DropNth: the 2nd SYN-ACK of the kernel server (port 80) is lost on the path

@test(timeout=60)
def dropnth_kernel_synack(c, tp, tmp):
    c.eq(tplab.ns_sysctl(SRV_NS, "tcp_synack_retries"), "2", "lab tcp_synack_retries")
    match = "tcp sport %d tcp flags & (syn|ack) == syn|ack" % PORT_HTTP
    bpf = "tcp port %d" % PORT_HTTP
    # client_guard: the server's request lives out its schedule (0, 1, 3 s)
    # whatever tcpprobe does; its copies are what this test is about.
    with client_guard(PORT_HTTP) as guard, \
            DropNth({2}, match) as drop, \
            Capture(SRV_NS, SRV_IF, os.path.join(tmp, "srv.pcap"), bpf=bpf) as srv, \
            Capture(CLI_NS, CLI_IF, os.path.join(tmp, "cli.pcap"), bpf=bpf) as cli:
        c.note("drop table:\n" + drop.listing())
        t0 = time.monotonic()
        r = tp.run(["-o", "json", "retransmit", "%s:%d" % (SRV_IP, PORT_HTTP), "--count", "1",
                    "--max-wait", "20s"], timeout=45)
        c.note(r.describe())
        sleep_until(t0 + 4.0)            # copy 3 is due ≈ 3 s after the SYN
        seen, dropped = drop.seen(), drop.dropped()
        c.note("client guard counters: %r" % guard.counters())
        name = drop.name
    c.check(name not in " ".join(tplab.nft_tables(PATH_NS)) and not tplab.loss_tables(),
            "table %s left behind in %s: %r" % (name, PATH_NS, tplab.nft_tables(PATH_NS)))
    pc, ps = cli.packets(), srv.packets()
    c.note("client-side capture:\n" + format_packets(pc))
    c.note("server veth capture:\n" + format_packets(ps))
    syns = [p for p in to_port(pc, PORT_HTTP) if p.flag_str() == "S"]
    c.require(len(syns) == 1, "SYNs from tcpprobe on the wire: %d, expected 1" % len(syns))
    sport = syns[0].sport
    sent = synacks(from_port(ps, PORT_HTTP, sport))
    got = synacks(from_port(pc, PORT_HTTP, sport))
    c.eq(len(sent), 3, "SYN-ACKs on the server veth (what the server sent; the drop is after it)")
    check_gaps(c, gaps(sent), [1.0, 2.0], "SYN-ACKs on the server veth", slack=0.15)
    c.eq(len(got), 2, "SYN-ACKs on the client veth")
    check_gaps(c, gaps(got), [3.0], "SYN-ACKs on the client veth", slack=0.15)
    if len(sent) == 3 and len(got) == 2:
        # copies 1 and 3 arrived: the client-side times match the server-side
        # ones (same clock; the path adds microseconds)
        c.check(abs(got[0].time - sent[0].time) < 0.01 and abs(got[1].time - sent[2].time) < 0.01,
                "the SYN-ACKs that arrived are not copies 1 and 3: client %r, server veth %r"
                % ([p.time for p in got], [p.time for p in sent]))
    # tcpprobe's liveness probes (1-byte ACKs far outside the window) complete nothing:
    # the server answers them with a pure ACK and keeps retransmitting its SYN-ACK.
    probes = [p for p in to_port(pc, PORT_HTTP, sport) if p.has(".") and not p.has("R")]
    c.check(all(p.len == 1 for p in probes),
            "tcpprobe sent ACKs that are not 1-byte liveness probes:\n" + format_packets(probes))
    c.eq((seen, dropped), (3, 1), "DropNth counters (seen, dropped)")


# --------------------------------------------------------------------------
# 4. DropNth positions, to_server: which of six ACKs to the closed port draw a RST

@test(timeout=40)
def dropnth_positions(c, tp, tmp):
    """Six hand-made ACKs to port 81 (the kernel answers each with RST, seq =
    their ack): only those not dropped on the path reach the server and are
    answered. A second table starts counting from 1 again."""
    bpf = "tcp port %d" % PORT_CLOSED
    with Capture(SRV_NS, SRV_IF, os.path.join(tmp, "srv.pcap"), bpf=bpf) as srv, \
            Capture(CLI_NS, CLI_IF, os.path.join(tmp, "cli.pcap"), bpf=bpf) as cli:
        rounds = []
        for rnd, positions in ((1, {1, 3, 4}), (2, {2}), (3, {6})):
            sport = 40000 + rnd
            match = "tcp sport %d tcp dport %d tcp flags & ack == ack" % (sport, PORT_CLOSED)
            with DropNth(positions, match, direction="to_server") as d:
                for i in range(1, 7):
                    tplab.send_segment(CLI_NS, CLI_IP, SRV_IP, sport, PORT_CLOSED, "A",
                                       seq=1000 + i, ack=rnd * 100 + i)
                time.sleep(0.2)
                rounds.append((rnd, sport, positions, d.seen(), d.dropped()))
    ps, pc = srv.packets(), cli.packets()
    c.note("server veth capture:\n" + format_packets(ps))
    c.note("client veth capture:\n" + format_packets(pc))
    for rnd, sport, positions, seen, dropped in rounds:
        sent = [p for p in to_port(pc, PORT_CLOSED, sport) if p.flag_str() == "."]
        arrived = [p for p in to_port(ps, PORT_CLOSED, sport) if p.flag_str() == "."]
        rsts = [p for p in from_port(ps, PORT_CLOSED, sport) if p.has("R")]
        want = [rnd * 100 + i for i in range(1, 7) if i not in positions]
        c.eq(len(sent), 6, "round %d: ACKs on the client veth (all sent)" % rnd)
        c.eq(sorted(p.ack for p in arrived), want, "round %d (drop %s): acks of the ACKs on the "
             "server veth (the dropped ones never reach it)" % (rnd, sorted(positions)))
        c.eq(sorted(p.seq for p in rsts), want, "round %d (drop %s): seqs of the kernel's RSTs"
             % (rnd, sorted(positions)))
        c.eq((seen, dropped), (6, len(positions)), "round %d: DropNth counters (seen, dropped)" % rnd)
    c.eq(tplab.loss_tables(), [], "loss tables left in %s" % PATH_NS)


# --------------------------------------------------------------------------
# 5. Loss 100 % to the client on port 7: connect() times out; after the block it works

@test(timeout=40)
def loss_echo(c, tp, tmp):
    bpf = "tcp port %d" % PORT_ECHO
    with Capture(SRV_NS, SRV_IF, os.path.join(tmp, "srv.pcap"), bpf=bpf) as srv, \
            Capture(CLI_NS, CLI_IF, os.path.join(tmp, "cli.pcap"), bpf=bpf) as cli:
        with Loss(percent_to_client=100, match="tcp sport %d" % PORT_ECHO) as loss:
            during = tplab.nft_tables(PATH_NS)
            lost = kernel_client(c, PORT_ECHO, "ping\n", connect_timeout=3.0, mode="echo")
            counts = loss.counts()
            c.note("loss table:\n" + loss.listing())
            t_end = time.time()      # pcap times are epoch; the server may still retransmit later
        after_tables = tplab.nft_tables(PATH_NS)
        ok = kernel_client(c, PORT_ECHO, "ping\n", connect_timeout=3.0, mode="echo")
    c.check(any(loss.name in t for t in during), "the loss table was not in %s during the block: %r"
            % (PATH_NS, during))
    c.check(not any(loss.name in t for t in after_tables) and not tplab.loss_tables(),
            "a loss table is left after the block: %r" % after_tables)
    c.eq(lost.get("connected"), False, "connect() under 100 % loss to the client")
    c.check(lost.get("errno") == 110 or "timed out" in str(lost.get("error")),
            "connect() under loss failed with %r, expected a timeout" % lost.get("error"))
    c.check(counts["to_client"]["seen"] >= 1 and
            counts["to_client"]["dropped"] == counts["to_client"]["seen"],
            "loss counters %r: every SYN-ACK must be dropped" % counts)
    c.eq(ok.get("connected"), True, "connect() after the block")
    c.eq(ok.get("reply"), "ping\n", "echo after the block")
    pc, ps = cli.packets(), srv.packets()
    c.note("client-side capture:\n" + format_packets(pc))
    c.note("server veth capture:\n" + format_packets(ps))
    lost_sport, ok_sport = lost.get("sport"), ok.get("sport")
    leaked = [p for p in from_port(pc, PORT_ECHO, lost_sport) if p.time < t_end]
    c.check(not leaked, "packets from port %d to the lost connection's port %s reached the client "
            "veth during the loss:\n%s" % (PORT_ECHO, lost_sport, format_packets(leaked)))
    # The server's transmit succeeded: its veth shows every SYN-ACK the path dropped.
    sent = [p for p in synacks(from_port(ps, PORT_ECHO, lost_sport)) if p.time < t_end]
    c.check(len(sent) >= 1 and len(sent) <= counts["to_client"]["dropped"],
            "SYN-ACKs to the lost connection on the server veth during the loss: %d, expected "
            "1..%d (the path dropped them after the server sent them)"
            % (len(sent), counts["to_client"]["dropped"]))
    c.check(len(to_port(ps, PORT_ECHO, lost_sport)) >= 2,
            "the server veth should show the client's SYN and its retransmissions (to_server is lossless)")
    c.check(synacks(from_port(pc, PORT_ECHO, ok_sport)), "no SYN-ACK on the client veth after the block")


# --------------------------------------------------------------------------
# 6. the client closes first; the peer's first FIN is lost, its copy 2 s later arrives

@test(timeout=40)
def peer_fin_retransmit(c, tp, tmp):
    cfg = {"fin_gaps": [2.0, 2.0]}
    match = "tcp sport %d tcp flags & fin == fin" % PEER_FIN
    with ForeignPeer(PEER_FIN, cfg, log_path=os.path.join(tmp, "peer.log")) as peer, \
            DropNth({1}, match) as drop, \
            Capture(SRV_NS, SRV_IF, os.path.join(tmp, "srv.pcap"), bpf="tcp port %d" % PEER_FIN) as srv, \
            Capture(CLI_NS, CLI_IF, os.path.join(tmp, "cli.pcap"), bpf="tcp port %d" % PEER_FIN) as cap:
        try:
            cl = kernel_client(c, PEER_FIN, "", mode="shut")
            c.require(cl.get("connected"), "the kernel client could not connect: %r" % cl)
            sport = cl.get("sport")
            closed = peer.wait_event("forget", 2.0, cport=sport)
            seen, dropped = drop.seen(), drop.dropped()
        finally:
            peer_note(c, peer)
    check_peer_gone(c, peer)
    pkts = cap.packets()
    c.note("client-side capture:\n" + format_packets(pkts))
    c.eq(cl.get("eof"), True, "the kernel client saw EOF")
    c.check(near(cl.get("eof_t", 0) - cl.get("shut_t", 0), 2.0, 0.2),
            "EOF %.3f s after our shutdown, expected ≈ 2 s (the first FIN was dropped)"
            % (cl.get("eof_t", 0) - cl.get("shut_t", 0)))
    c.check(closed and closed.get("why") == "closed", "the peer did not reach CLOSED: %r" % closed)
    states = [e.get("new") for e in peer.events("state", cport=sport)]
    c.eq(states, ["ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"], "the peer's states")
    fins = peer.events("fin", "fin-retx", cport=sport)
    c.eq([e["event"] for e in fins], ["fin", "fin-retx"], "the peer's FIN copies (log)")
    if len(fins) == 2:
        c.check(near(fins[1]["t"] - fins[0]["t"], 2.0, 0.05), "FIN copies %.3f s apart, expected 2 s"
                % (fins[1]["t"] - fins[0]["t"]))
    theirs = from_port(pkts, PEER_FIN, sport)
    wire_fins = [p for p in theirs if p.has("F")]
    c.eq(len(wire_fins), 1, "peer FINs on the client veth (copy 1 dropped)")
    ps = srv.packets()
    c.note("server veth capture:\n" + format_packets(ps))
    sent_fins = [p for p in from_port(ps, PEER_FIN, sport) if p.has("F")]
    c.eq(len(sent_fins), 2, "peer FINs on the server veth (both copies sent; the drop is after it)")
    if len(sent_fins) == 2 and wire_fins:
        c.check(abs(wire_fins[0].time - sent_fins[1].time) < 0.01,
                "the FIN that reached the client is not copy 2: client %.6f, server veth %r"
                % (wire_fins[0].time, [p.time for p in sent_fins]))
    our_fin = [p for p in to_port(pkts, PEER_FIN, sport) if p.has("F")]
    if wire_fins and our_fin:
        c.check(near(wire_fins[0].time - our_fin[0].time, 2.0, 0.15),
                "the peer's FIN reached the client %.3f s after the client's FIN, expected ≈ 2 s"
                % (wire_fins[0].time - our_fin[0].time))
    c.check(not [p for p in pkts if p.has("R")], "a RST on the wire:\n"
            + format_packets([p for p in pkts if p.has("R")]))
    c.eq((seen, dropped), (2, 1), "DropNth counters (seen, dropped)")


# --------------------------------------------------------------------------
# 7. a hand-made client: options, FIN on the data, TIME-WAIT policies, closed port

@test(timeout=40)
def peer_policies(c, tp, tmp):
    """The whole connection is crafted from the client namespace (its kernel's
    RSTs are kept off the wire by client_guard), so every probe is exact."""
    cfg = {"timestamps": True, "sack": True, "wscale": 7, "fin_with_data": True,
           "tw_duration": 20.0, "tw_answers": ["retx-fin", "ack"], "tw_restarts": [],
           "tw_rfc1337": True, "closed_reply": "rst-ack-only"}
    sport, other = 40104, 40105
    isn = 1_000_000
    req = HTTP_REQUEST
    steps = []

    def send(flags, seq, ack=0, payload="", sp=sport, **kw):
        steps.append(tplab.send_segment(CLI_NS, CLI_IP, SRV_IP, sp, PEER_POLICY, flags, seq=seq,
                                        ack=ack, payload=payload, **kw))
        time.sleep(0.15)

    with client_guard(PEER_POLICY), \
            ForeignPeer(PEER_POLICY, cfg, log_path=os.path.join(tmp, "peer.log")) as peer, \
            Capture(CLI_NS, CLI_IF, os.path.join(tmp, "cli.pcap"), bpf="tcp port %d" % PEER_POLICY) as cap:
        try:
            send("S", isn, mss=1400, sack=True, wscale=5, ts=[111, 0])
            sa = peer.wait_event("synack", 2.0, cport=sport)
            c.require(sa, "no SYN-ACK in the peer's log")
            iss = sa["seq"]
            send("PA", isn + 1, iss + 1, req, ts=[112, 0])
            df = peer.wait_event("data+fin", 2.0, cport=sport)
            c.require(df, "no data+fin event (fin_with_data) in the peer's log")
            reply_len = df["len"]
            snd_nxt = (iss + 1 + reply_len + 1) % 2**32
            fin_seq = isn + 1 + len(req)
            rcv_nxt = fin_seq + 1
            send("FA", fin_seq, snd_nxt, ts=[113, 0])
            tw = peer.wait_event("tw-enter", 2.0, cport=sport)
            c.require(tw, "the peer did not enter TIME-WAIT")
            c.eq((tw["snd_nxt"], tw["rcv_nxt"], tw["client_fin_seq"]), (snd_nxt, rcv_nxt, fin_seq),
                 "tw-enter snd_nxt, rcv_nxt, client_fin_seq")
            probes = [("F", fin_seq + 10, 0, "fin-noack", False),      # not a retransmission
                      ("A", rcv_nxt, snd_nxt, "ack", True),
                      ("R", rcv_nxt, 0, "rst", False),                 # in window; RFC 1337 on
                      ("FA", fin_seq, snd_nxt, "retx-fin", True),
                      ("S", rcv_nxt + 1000, 0, "syn", False)]          # tw_syn_accept off
            for flags, seq, ack, _, _ in probes:
                send(flags, seq, ack, mark=tplab.FOREIGN_MARK if flags == "R" else None)
            # closed_reply rst-ack-only, on a 4-tuple the peer never saw
            send("F", 5000, 0, sp=other)
            send("A", 5000, 777, sp=other)
            # SIGTERM: the peer logs its exit and deletes its own nft table
            peer.proc.terminate()
            peer.proc.wait(timeout=5)
            tables = tplab.nft_tables(SRV_NS)
        finally:
            peer_note(c, peer)
    check_peer_gone(c, peer)
    pkts = cap.packets()
    c.note("client-side capture:\n" + format_packets(pkts))
    c.note("crafted: %r" % steps)
    c.check(not [t for t in tables if "tpforeign_" in t],
            "the peer left its table after SIGTERM: %r" % tables)
    ex = peer.events("exit")
    c.check(ex and "signal 15" in str(ex[-1].get("why")), "no exit event for SIGTERM: %r" % ex)

    theirs = from_port(pkts, PEER_POLICY, sport)
    syn_acks = synacks(theirs)
    c.require(len(syn_acks) == 1, "SYN-ACKs on the wire: %d" % len(syn_acks))
    c.eq(syn_acks[0].option_kinds(), [2, 4, 8, 1, 3], "SYN-ACK option kinds (mss, sackOK, TS, wscale)")
    c.eq((syn_acks[0].mss, syn_acks[0].wscale), (1460, 7), "SYN-ACK mss and wscale")
    data = [p for p in theirs if (p.len or 0) > 0]
    c.check(len(data) == 1 and data[0].flag_str() == "FP." and data[0].len == len(FOREIGN_REPLY),
            "expected one data segment with FIN and PSH of %d bytes:\n%s"
            % (len(FOREIGN_REPLY), format_packets(data)))
    c.check(all(8 in p.option_kinds() for p in theirs if not p.has("R")),
            "a segment without the timestamps option (negotiated):\n" + format_packets(theirs))
    kinds = [(e.get("event"), e.get("kind")) for e in peer.events("tw-answer", "tw-ignore", cport=sport)]
    c.eq(kinds, [("tw-ignore", k) if not answered else ("tw-answer", k) for _, _, _, k, answered in probes],
         "TIME-WAIT answers / ignores per probe")
    c.eq(peer.events("tw-restart", "tw-killed", "tw-expire", "tw-syn-accept", cport=sport), [],
         "TIME-WAIT restarts, kills, expiries, accepted SYNs")
    acks = [p for p in theirs if p.flag_str() == "." and p.time > syn_acks[0].time]
    tw_acks = [p for p in acks if p.seq == snd_nxt and p.ack == rcv_nxt]
    c.eq(len(tw_acks), 3, "ACKs seq %d ack %d (one for our FIN, two TIME-WAIT answers)"
         % (snd_nxt, rcv_nxt))
    c.eq([p.flag_str() for p in from_port(pkts, PEER_POLICY, other)], ["R"],
         "answers on the unknown 4-tuple (rst-ack-only: the bare FIN gets none)")
    rst = from_port(pkts, PEER_POLICY, other)
    if rst:
        c.eq(rst[0].seq, 777, "closed-port RST seq = the ACK's ack")


# --------------------------------------------------------------------------

if __name__ == "__main__":
    sys.exit(tplab.main(TESTS))
