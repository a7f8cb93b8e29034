#!/usr/bin/env python3
"""Privileged integration tests of `tcpprobe ping` and multi-target `handshake`.

    test_ping.py --tcpprobe BIN --source-dir DIR NAME     run one test
    test_ping.py --list                                   "NAME TIMEOUT" lines (for CMake)

Mixed open / closed / filtered / ICMP-rejecting ports in one run, through one capture
and one flow table; each destination's verdict and counts are checked against the wire
(a capture on the client veth). Traffic stays inside the lab namespaces.
"""

import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import (CLI_IF, CLI_IP, CLI_NS, SRV_IP, PORT_CLOSED, PORT_DROP, PORT_OPEN,  # noqa: E402
                   PORT_REJECT, Capture)

TESTS = {}
MIXED = "%s:%d-%d" % (SRV_IP, PORT_OPEN, PORT_REJECT)  # 80 open, 81 closed, 82 dropped, 83 rejected
EXPECTED = {PORT_OPEN: "open", PORT_CLOSED: "closed", PORT_DROP: "filtered", PORT_REJECT: "unreachable"}


def test(timeout):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        return fn
    return deco


def summary_of(c, r, rc):
    c.note(r.describe())
    c.require(r.parse_error is None, r.parse_error or "")
    s = r.summary()
    c.require(s is not None, "the last stdout line is not a summary object")
    c.eq(r.returncode, rc, "exit code")
    return s


@test(timeout=40)
def ping_mixed_ports(c, tp, tmp):
    """One run, four destinations: each verdict and count matches the capture."""
    cap = Capture(CLI_NS, CLI_IF, os.path.join(tmp, "c.pcap"))
    with cap:
        r = tp.run(["-o", "json", "ping", MIXED, "--count", "4", "--interval", "50ms", "--timeout", "500ms"], timeout=30)
    s = summary_of(c, r, 0)
    c.eq(s.get("command"), "ping", "command")
    c.eq(s.get("verdict"), "open", "combined verdict (the most informative)")
    dests = {d["port"]: d for d in s.get("destinations", [])}
    c.eq(sorted(dests), sorted(EXPECTED), "one entry per destination port")
    for port, verdict in EXPECTED.items():
        d = dests.get(port, {})
        c.eq(d.get("verdict"), verdict, "verdict of port %d" % port)
        c.eq(d.get("sent"), 4, "probes sent to port %d" % port)
    c.eq(dests[PORT_OPEN].get("syn_ack"), 4, "SYN-ACKs from the open port")
    c.eq(dests[PORT_CLOSED].get("rst"), 4, "RSTs from the closed port")
    c.eq(dests[PORT_DROP].get("silence"), 4, "silent probes to the dropped port")
    c.eq(dests[PORT_REJECT].get("icmp"), 4, "ICMP errors from the rejecting port")
    c.eq(s.get("sent"), 16, "all probes")
    pkts = cap.packets()
    syns = [p for p in pkts if p.src == CLI_IP and p.has("S") and not p.has(".")]
    c.eq(len(syns), 16, "SYNs on the wire")
    c.eq(len({(p.sport, p.seq) for p in syns}), 16, "every probe has its own (source port, ISN)")
    synacks = [p for p in pkts if p.src == SRV_IP and p.sport == PORT_OPEN and p.has("S") and p.has(".")]
    for sa in synacks:
        ours = [p for p in pkts if p.src == CLI_IP and p.dport == PORT_OPEN and p.sport == sa.dport and p.has("R")]
        c.check(len(ours) >= 1, "a RST answered the SYN-ACK to port %d" % sa.dport)
    rtt = dests[PORT_OPEN].get("rtt") or {}
    for k in ("min_us", "avg_us", "max_us", "mdev_us", "p50_us", "p90_us", "p99_us"):
        c.check(isinstance(rtt.get(k), (int, float)), "rtt.%s is a number" % k)
    c.check(rtt.get("min_us", 0) <= rtt.get("p50_us", -1) <= rtt.get("max_us", -1), "min <= p50 <= max")
    c.eq(tplab.tcpprobe_guards(), [], "no RST guard (ping runs without it)")


@test(timeout=40)
def ping_pace(c, tp, tmp):
    """--interval spaces the SYNs at the wire; --rate does the same in probes per second."""
    cap = Capture(CLI_NS, CLI_IF, os.path.join(tmp, "p.pcap"))
    with cap:
        r = tp.run(["-o", "json", "ping", "%s:%d" % (SRV_IP, PORT_OPEN), "--count", "6", "--rate", "10"], timeout=30)
    s = summary_of(c, r, 0)
    c.eq(s.get("syn_ack"), 6, "all answered")
    syns = sorted(p.time for p in cap.packets() if p.src == CLI_IP and p.has("S") and not p.has("."))
    c.eq(len(syns), 6, "SYNs on the wire")
    gaps = [b - a for a, b in zip(syns, syns[1:])]
    for g in gaps:
        c.check(0.08 <= g <= 0.15, "SYNs 100 ms apart at 10/s (gap %.3f s)" % g)


@test(timeout=40)
def ping_held_connection(c, tp, tmp):
    """The first SYN-ACK lost on the path leaves the server holding that half-open
    connection; the lane's next SYN draws an ACK for it. tcpprobe resets it and sends
    the probe again: one packet lost counts one probe lost, not two."""
    cap = Capture(CLI_NS, CLI_IF, os.path.join(tmp, "h.pcap"))
    with tplab.DropNth({1}, "tcp sport %d tcp flags & (syn|ack) == syn|ack" % PORT_OPEN) as drop, cap:
        # Two lanes, 100 ms apart: the first lane is used again 200 ms later, long
        # before the server's SYN-ACK retransmission (1 s) would have cleared it.
        r = tp.run(["-o", "json", "ping", "%s:%d" % (SRV_IP, PORT_OPEN), "--count", "4", "--interval", "100ms",
                    "--timeout", "150ms"], timeout=30)
        dropped = drop.dropped()
    s = summary_of(c, r, 0)
    c.eq(dropped, 1, "SYN-ACKs dropped on the path")
    c.eq(s.get("lanes"), 2, "lanes")
    c.eq(s.get("sent"), 4, "probes")
    c.eq(s.get("syn_ack"), 3, "probes answered by a SYN-ACK")
    c.eq(s.get("silence"), 1, "probes lost (only the one whose SYN-ACK was dropped)")
    c.eq(s.get("resent"), 1, "probes sent again after the server's ACK for the held connection")
    pkts = cap.packets()
    first = min((p for p in pkts if p.src == CLI_IP and p.has("S") and not p.has(".")), key=lambda p: p.time)
    held_acks = [p for p in pkts if p.src == SRV_IP and p.has(".") and not p.has("S") and not p.has("R")
                 and p.dport == first.sport and p.ack == (first.seq + 1) % 2**32]
    c.eq(len(held_acks), 1, "the server's ACK for the first probe's held connection")
    ours = [p for p in pkts if p.src == CLI_IP and p.sport == first.sport and p.has("R")
            and p.seq == (first.seq + 1) % 2**32]
    c.check(len(ours) >= 1, "a RST in the held connection's window (ours, and the kernel's)")


@test(timeout=60)
def ping_flood_correlates(c, tp, tmp):
    """--flood: every probe is sent and matched to its answer; no per-probe lines."""
    r = tp.run(["-o", "json", "ping", "%s:%d" % (SRV_IP, PORT_OPEN), "--flood", "--count", "3000"], timeout=50)
    s = summary_of(c, r, 0)
    c.eq(s.get("sent"), 3000, "probes sent")
    c.check(s.get("syn_ack", 0) >= 2997, "at least 99.9%% of the probes matched to a SYN-ACK (%s)" % s.get("syn_ack"))
    c.eq([e for e in r.events("note") if "seq=" in e.get("text", "")], [], "no per-probe lines under --flood")


def rtt_errors(c, pkts, probe_rtts):
    """|tool RTT - capture interval| per probe: probe_rtts maps a source port to its
    probes' rtt_us in order; the k-th SYN from a port pairs with its SYN-ACK (ack = seq + 1)."""
    errs = []
    for sport, rtts in probe_rtts.items():
        syns = [p for p in pkts if p.src == CLI_IP and p.sport == sport and p.has("S") and not p.has(".")]
        for k, rtt in enumerate(rtts):
            if k >= len(syns) or rtt is None:
                continue
            ans = [p for p in pkts if p.src == SRV_IP and p.dport == sport and p.has("S") and p.has(".")
                   and p.ack == (syns[k].seq + 1) % 2**32]
            if ans:
                errs.append(abs(rtt - (ans[0].time - syns[k].time) * 1e6))
    return errs


@test(timeout=60)
def rtt_matches_capture(c, tp, tmp):
    """RTTs equal tcpdump's SYN -> SYN-ACK intervals on the client veth (nanosecond stamps),
    with libpcap (-w, the same packet-socket stamps as tcpdump): median error <= 2 us
    (rtt_us is rounded to 0.5 us; the two sockets stamp our SYN in the same tap loop);
    with the raw-socket capture (default): median <= 5 us. The answer's stamp is the same
    skb stamp as tcpdump's; our SYN's time is the midpoint of two kernel transmit stamps
    that bracket tcpdump's, about 13 us apart in the lab, so an error beyond half the
    bracket would mean they do not bracket it. How close the midpoint comes depends on
    the load (0.3-0.6 us unloaded, 2-3 us with the 2 cores saturated): bench/run's
    precision rows hold the <= 1 us target."""
    for label, extra in (("raw sockets", []), ("libpcap -w", ["-w", os.path.join(tmp, "tp.pcap")])):
        cap = Capture(CLI_NS, CLI_IF, os.path.join(tmp, "c-%d.pcap" % len(extra)), nano=True, immediate=False)
        with cap:
            r = tp.run(["-o", "json"] + extra + ["ping", "%s:%d" % (SRV_IP, PORT_OPEN), "--count", "20",
                                                 "--interval", "30ms", "--timeout", "200ms"], timeout=30)
            h = [tp.run(["-o", "json"] + extra + ["handshake", "%s:%d" % (SRV_IP, PORT_OPEN)], timeout=15)
                 for _ in range(3)]
        s = summary_of(c, r, 0)
        c.eq(s.get("syn_ack"), 20, "%s: SYN-ACKs" % label)
        if extra:
            c.check(isinstance(s.get("kernel_rsts"), int), "%s: kernel RSTs counted: %r" % (label, s.get("kernel_rsts")))
        else:
            c.eq(s.get("kernel_rsts"), None, "%s: kernel_rsts (null: the raw capture does not see them)" % label)
        by_port = {}
        for e in r.events("probe"):
            by_port.setdefault(e.get("flow"), []).append(e.get("rtt_us"))
        for hr in h:
            hs = summary_of(c, hr, 0)
            p0 = (hs.get("probes") or [{}])[0]
            by_port.setdefault(p0.get("sport"), []).append(p0.get("rtt_us"))
        errs = sorted(rtt_errors(c, cap.packets(), by_port))
        c.note("%s: abs. errors (us): %s" % (label, ["%.2f" % x for x in errs]))
        c.require(len(errs) >= 20, "%s: %d probes paired with the capture, expected 23" % (label, len(errs)))
        limit = 2.0 if extra else 5.0
        c.check(errs[len(errs) // 2] <= limit, "%s: median abs. error %.2f us > %g us" % (label, errs[len(errs) // 2], limit))


UDP_LOAD = r"""
import socket, sys, time
# Bounded: at most 3 s and 100,000 datagrams to the lab server's discard port.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, n, payload = time.time() + 3.0, 0, b"x" * 1400
while time.time() < end and n < 100000:
    try:
        s.sendto(payload, (sys.argv[1], 9))
        n += 1
    except OSError:
        time.sleep(0.0005)
    if n % 20 == 0:
        time.sleep(0.002)
"""


@test(timeout=60)
def rtt_behind_a_queue(c, tp, tmp):
    """Our SYNs wait up to 200 ms in a token bucket on the client veth (busy uplink) before
    the tap: the RTT must still be the wire's (tshark's SYN -> SYN-ACK), not the wait.
    Before, a SYN's SND stamp came in a later read than its SCHED stamp, which then
    dated it alone: RTTs of about 199 ms against a wire RTT of 25 us."""
    add = tplab.run(tplab.ns_cmd(CLI_NS, ["tc", "qdisc", "add", "dev", CLI_IF, "root", "tbf", "rate", "2mbit",
                                         "burst", "1600", "latency", "200ms"]), timeout=10)
    c.require(add.returncode == 0, "tbf qdisc: %s" % add.stderr.strip())
    try:
        cap = Capture(CLI_NS, CLI_IF, os.path.join(tmp, "q.pcap"), nano=True, immediate=False)
        with cap:
            load = subprocess.Popen(tplab.ns_cmd(CLI_NS, [sys.executable, "-c", UDP_LOAD, SRV_IP]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)  # the queue fills
                r = tp.run(["-o", "json", "ping", "%s:%d" % (SRV_IP, PORT_OPEN), "--count", "10", "--interval",
                            "100ms", "--timeout", "1s"], timeout=20)
                # A one-shot run: its only SYN waits before the device has shown an SND stamp.
                h = tp.run(["-o", "json", "handshake", "%s:%d" % (SRV_IP, PORT_OPEN)], timeout=15)
            finally:
                load.wait(timeout=10)
    finally:
        tplab.run(tplab.ns_cmd(CLI_NS, ["tc", "qdisc", "del", "dev", CLI_IF, "root"]), timeout=10)
    s = summary_of(c, r, 0)
    c.eq(s.get("syn_ack"), 10, "SYN-ACKs")
    by_port = {}
    for e in r.events("probe"):
        by_port.setdefault(e.get("flow"), []).append(e.get("rtt_us"))
    hs = summary_of(c, h, 0)
    p0 = (hs.get("probes") or [{}])[0]
    by_port.setdefault(p0.get("sport"), []).append(p0.get("rtt_us"))
    pkts = cap.packets()
    errs = sorted(rtt_errors(c, pkts, by_port))
    c.note("abs. errors (us): %s" % ["%.1f" % x for x in errs])
    c.require(len(errs) >= 9, "%d probes paired with the capture" % len(errs))
    h_err = rtt_errors(c, pkts, {p0.get("sport"): [p0.get("rtt_us")]})
    c.check(h_err and h_err[0] <= 50.0, "handshake: abs. error %r us" % h_err)
    syn_times = {(p.sport, p.seq): p.time for p in pkts if p.src == CLI_IP and p.has("S") and not p.has(".")}
    c.check(len(syn_times) == 11, "SYNs on the wire: %d" % len(syn_times))
    c.check(errs[len(errs) // 2] <= 10.0, "median abs. error %.1f us > 10 us" % errs[len(errs) // 2])
    c.check(errs[-1] <= 50.0, "largest abs. error %.1f us > 50 us" % errs[-1])


@test(timeout=60)
def flood_behind_a_dropping_queue(c, tp, tmp):
    """A token bucket with a 3,000-byte queue on the client veth drops most of a flood's
    SYNs before they reach the device: those probes are silent, such SYNs are reported
    as not seen reaching the device (never as a capture drop), and the
    answered probes' RTTs are the wire's, not the queue's (before: p50 about 18 ms)."""
    add = tplab.run(tplab.ns_cmd(CLI_NS, ["tc", "qdisc", "add", "dev", CLI_IF, "root", "tbf", "rate", "1mbit",
                                         "burst", "1600", "limit", "3000"]), timeout=10)
    c.require(add.returncode == 0, "tbf qdisc: %s" % add.stderr.strip())
    try:
        r = tp.run(["-o", "json", "ping", "%s:%d" % (SRV_IP, PORT_OPEN), "--flood", "--count", "3000"], timeout=40)
    finally:
        tplab.run(tplab.ns_cmd(CLI_NS, ["tc", "qdisc", "del", "dev", CLI_IF, "root"]), timeout=10)
    s = summary_of(c, r, 0)
    c.eq(s.get("sent"), 3000, "probes")
    silent = s.get("silence") or 0
    c.check(silent > 0, "the queue dropped some SYNs: %d silent" % silent)
    c.eq(s.get("capture_drops"), 0, "capture drops")
    m = re.search(r"(\d+) of our packets were not seen reaching the network device", r.stderr or "")
    c.check(m is not None, "no warning about SYNs that never reached the device:\n%s" % r.stderr)
    if m:
        # The last drain cannot tell a SYN still queued from one dropped after the last
        # that reached the device: a few at the very end may go uncounted.
        unsent = int(m.group(1))
        c.check(silent - 10 <= unsent <= silent, "SYNs not seen reaching the device (%d) vs silent probes (%d)"
                % (unsent, silent))
    rtt = s.get("rtt") or {}
    c.check((rtt.get("p50_us") or 1e9) < 1000, "RTT p50 %r us: the queue's wait is not in it" % rtt.get("p50_us"))


@test(timeout=40)
def handshake_multi_target(c, tp, tmp):
    """handshake over a port range: one flow per destination, each with its own verdict."""
    r = tp.run(["-o", "json", "handshake", MIXED, "%s:%d" % (SRV_IP, 8001), "--timeout", "1s"], timeout=30)
    s = summary_of(c, r, 0)
    probes = {int(p["target"].rsplit(":", 1)[1]): p for p in s.get("probes", [])}
    c.eq(sorted(probes), sorted(list(EXPECTED) + [8001]), "one probe per destination")
    for port, verdict in EXPECTED.items():
        c.eq(probes[port].get("verdict"), verdict, "verdict of port %d" % port)
    c.eq(probes[8001].get("verdict"), "open", "verdict of port 8001")
    c.eq(probes[PORT_REJECT].get("icmp", {}).get("code"), 13, "ICMP code of port 83")
    c.eq(len({p["sport"] for p in probes.values()}), 5, "distinct source ports")
    c.eq(tplab.tcpprobe_guards(), [], "no RST guard left")


@test(timeout=20)
def bad_targets(c, tp, tmp):
    for args in (["ping", "%s:90-80" % SRV_IP], ["ping", "%s:0" % SRV_IP], ["ping", "%s:80" % SRV_IP, "--rate", "0"],
                 ["handshake", "%s:80,,81" % SRV_IP], ["ping", "[::1]:80"]):
        r = tp.run(args, timeout=10)
        c.eq(r.returncode, 64, "exit code of %s" % " ".join(args))
        c.eq(len(r.stderr.strip().splitlines()), 1, "one stderr line for %s" % " ".join(args))


if __name__ == "__main__":
    sys.exit(tplab.main(TESTS))
