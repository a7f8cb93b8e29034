#!/usr/bin/env python3
"""Privileged integration tests of `tcpprobe handshake` against the lab.

    test_handshake.py --tcpprobe BIN --source-dir DIR NAME     run one test
    test_handshake.py --list                                   "NAME TIMEOUT" lines (for CMake)

Exit 0 pass, 1 fail, 77 skipped (not root / no network namespaces).  Every
test asserts facts observed on the wire (tcpdump + tshark in a lab namespace),
in the server's socket table (ss) or in the nft ruleset, besides tcpprobe's own
output and exit code.  Traffic stays inside the lab namespaces (TP_LAB_NET.1/.2
and loopback inside the client namespace).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import (CLI_IF, CLI_IP, CLI_NS, SRV_IF, SRV_IP, SRV_NS, PORT_CLOSED,  # noqa: E402
                   PORT_DROP, PORT_OPEN, PORT_REJECT, CKSUM_GOOD, Capture, TestFailure,
                   format_packets)

TARGET = "%s:%d" % (SRV_IP, PORT_OPEN)
TESTS = {}


def test(timeout):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        return fn
    return deco


is_number = tplab.is_number


def require_ok_json(c, r, rc, verdict):
    """Exit code, parseable JSON, summary with the verdict. Returns the summary."""
    c.note(r.describe())
    lines = r.json_lines()
    c.require(r.parse_error is None, r.parse_error or "")
    s = r.summary()
    c.require(s is not None, "the last stdout line is not a summary object")
    c.eq(r.returncode, rc, "exit code")
    c.eq(s.get("verdict"), verdict, "summary verdict")
    c.require(len(s.get("probes") or []) >= 1, "summary has no probes[]")
    return s


def client_packets(pkts, sport):
    return [p for p in pkts if p.src == CLI_IP and p.sport == sport]


def server_packets(pkts, sport):
    return [p for p in pkts if p.src == SRV_IP and p.dport == sport]


# --------------------------------------------------------------------------
# 1. open port, full option set: what went on the wire, what the server holds

@test(timeout=40)
def open_full_options(c, tp, tmp):
    pcap = os.path.join(tmp, "srv.pcap")
    with Capture(SRV_NS, SRV_IF, pcap) as cap:
        r = tp.run(["-o", "json", "handshake", TARGET, "--mss", "1234", "--wscale", "5", "--sack",
                    "--ts", "--window", "5000", "--ttl", "33", "--tos", "0x10"])
        s = require_ok_json(c, r, 0, "open")
        p0 = r.probe(0)
        sport = p0.get("sport")
        c.require(isinstance(sport, int) and 0 < sport < 65536, "probes[0].sport: %r" % (sport,))
        # The server's kernel must hold an established connection from that port.
        estab = tplab.wait_until(
            lambda: [x for x in tplab.server_sockets_for_client_port(sport) if x[0] == "ESTAB"], 2.0)
        c.check(estab, "ss -tn in %s shows no ESTAB socket for %s:%d; sockets: %r"
                % (SRV_NS, CLI_IP, sport, tplab.ss_sockets(SRV_NS)))
        time.sleep(0.3)        # a late kernel RST would show up in this window
    pkts = cap.packets()
    c.note("server-side capture:\n" + format_packets(pkts))
    ours = client_packets(pkts, sport)
    syns = [p for p in ours if p.has("S") and not p.has(".")]
    c.require(len(syns) == 1, "expected exactly 1 SYN from %s:%d on %s, saw %d"
              % (CLI_IP, sport, SRV_IF, len(syns)))
    syn = syns[0]
    c.eq(syn.mss, 1234, "SYN MSS option")
    c.eq(syn.wscale, 5, "SYN window-scale shift")
    c.check(4 in syn.option_kinds(), "SYN lacks SACK-permitted (kind 4): kinds %s" % syn.kinds)
    c.check(8 in syn.option_kinds(), "SYN lacks timestamps (kind 8): kinds %s" % syn.kinds)
    c.check(syn.tsval is not None, "SYN has no TSval")
    c.eq(syn.win, 5000, "SYN window field")
    c.eq(syn.ttl, 33, "SYN IP TTL")
    c.eq(syn.tos, 0x10, "SYN IP TOS/DS byte")
    c.eq(syn.dport, PORT_OPEN, "SYN destination port")
    for p in ours:
        c.eq(p.ip_cksum, CKSUM_GOOD, "IP checksum status (1 = good) of our %s" % p.flag_str())
        c.eq(p.tcp_cksum, CKSUM_GOOD, "TCP checksum status (1 = good) of our %s" % p.flag_str())
    synacks = [p for p in server_packets(pkts, sport) if p.has("S") and p.has(".")]
    c.check(len(synacks) >= 1, "no SYN-ACK from the server in the capture")
    acks = [p for p in ours if p.flag_str() == "."]
    c.check(len(acks) >= 1, "no final ACK from the client in the capture")
    if synacks and acks:
        c.eq(acks[0].ack, (synacks[0].seq + 1) % 2**32, "final ACK acknowledges IRS+1")
        c.eq(acks[0].seq, (syn.seq + 1) % 2**32, "final ACK carries ISS+1")
    rsts = [p for p in ours if p.has("R")]
    c.check(not rsts, "a RST from the client reached the server (RST guard failed?):\n"
            + format_packets(rsts))
    neg = p0.get("negotiated") or {}
    c.eq(neg.get("mss_ours"), 1234, "negotiated.mss_ours")
    c.eq(neg.get("wscale_ours"), 5, "negotiated.wscale_ours")
    c.eq(p0.get("isn"), syn.seq, "probes[0].isn vs the SYN's sequence number on the wire")


# --------------------------------------------------------------------------
# 2. --half-open: the server forgets the connection, our RST is on the wire

@test(timeout=30)
def half_open(c, tp, tmp):
    pcap = os.path.join(tmp, "srv.pcap")
    with Capture(SRV_NS, SRV_IF, pcap) as cap:
        r = tp.run(["-o", "json", "handshake", TARGET, "--half-open"])
        require_ok_json(c, r, 0, "open")
        p0 = r.probe(0)
        sport = p0.get("sport")
        c.require(isinstance(sport, int), "probes[0].sport: %r" % (sport,))
        left = tplab.wait_until(lambda: not tplab.server_sockets_for_client_port(sport), 2.0)
        c.check(left, "ss -tan in %s still has a socket for %s:%d after --half-open: %r"
                % (SRV_NS, CLI_IP, sport, tplab.server_sockets_for_client_port(sport)))
    pkts = cap.packets()
    c.note("server-side capture:\n" + format_packets(pkts))
    ours = client_packets(pkts, sport)
    c.check(any(p.has("S") and p.has(".") for p in server_packets(pkts, sport)),
            "no SYN-ACK from the server in the capture")
    isn = p0.get("isn")
    rsts = [p for p in ours if p.has("R")]
    c.check(rsts, "no RST from %s:%d in the server-side capture" % (CLI_IP, sport))
    if isinstance(isn, int):
        c.check(any(p.seq == (isn + 1) % 2**32 for p in rsts),
                "no RST with seq ISN+1 = %d in the capture" % ((isn + 1) % 2**32))
    c.check(not [p for p in ours if p.flag_str() == "."],
            "--half-open sent an ACK: " + format_packets([p for p in ours if p.flag_str() == "."]))


# --------------------------------------------------------------------------
# 3. closed / filtered / unreachable

@test(timeout=20)
def closed_port(c, tp, tmp):
    r = tp.run(["-o", "json", "handshake", "%s:%d" % (SRV_IP, PORT_CLOSED)])
    require_ok_json(c, r, 1, "closed")
    ans = r.probe(0).get("answer") or {}
    c.check("R" in str(ans.get("flags")), "probes[0].answer.flags should be a RST: %r" % (ans,))
    rst_in = [e for e in r.events("segment") if e.get("dir") == "in" and "R" in str(e.get("flags"))]
    c.check(rst_in, "no incoming RST segment event")


@test(timeout=20)
def filtered_port(c, tp, tmp):
    r = tp.run(["-o", "json", "handshake", "%s:%d" % (SRV_IP, PORT_DROP), "--timeout", "1.5s"])
    s = require_ok_json(c, r, 2, "filtered")
    c.check(1.5 <= r.elapsed <= 3.0, "wall time %.3f s not within [1.5, 3.0] s (--timeout 1.5s)"
            % r.elapsed)
    c.eq(s.get("answered"), 0, "summary answered")
    c.check(not [e for e in r.events("segment") if e.get("dir") == "in"],
            "segments received from a port that drops everything")


@test(timeout=20)
def unreachable_port(c, tp, tmp):
    r = tp.run(["-o", "json", "handshake", "%s:%d" % (SRV_IP, PORT_REJECT)])
    require_ok_json(c, r, 3, "unreachable")
    icmp = r.probe(0).get("icmp") or {}
    c.eq(icmp.get("type"), 3, "probes[0].icmp.type")
    c.eq(icmp.get("code"), 13, "probes[0].icmp.code")
    c.eq(icmp.get("from"), SRV_IP, "probes[0].icmp.from")


# --------------------------------------------------------------------------
# 4. negotiation follows the server's settings

def srv_sysctl(key, value=None):
    if value is None:
        r = tplab.in_srv(["sysctl", "-n", "net.ipv4." + key], timeout=10, check=True)
        return r.stdout.strip()
    tplab.in_srv(["sysctl", "-q", "-w", "net.ipv4.%s=%s" % (key, value)], timeout=10, check=True)


def srv_route():
    r = tplab.run(["ip", "-j", "-n", SRV_NS, "route", "show", "%s.0/24" % tplab.NET, "dev", SRV_IF],
                  timeout=10, check=True)
    routes = json.loads(r.stdout)
    if len(routes) != 1:
        raise TestFailure("expected one route %s.0/24 dev %s in %s, got %r"
                          % (tplab.NET, SRV_IF, SRV_NS, routes))
    return routes[0]


def route_argv(rt):
    """`ip route replace` arguments that recreate route rt (from ip -j)."""
    argv = [rt["dst"], "dev", SRV_IF]
    if rt.get("protocol"):
        argv += ["proto", rt["protocol"]]
    if rt.get("scope"):
        argv += ["scope", rt["scope"]]
    if rt.get("prefsrc"):
        argv += ["src", rt["prefsrc"]]
    for m in rt.get("metrics", []) or []:
        for k, v in m.items():
            argv += [k, str(v)]
    return argv


@test(timeout=40)
def negotiation_follows_server(c, tp, tmp):
    keys = ("tcp_timestamps", "tcp_sack", "tcp_window_scaling")
    saved = {k: srv_sysctl(k) for k in keys}
    route = srv_route()
    c.note("server route before: %r; sysctls before: %r" % (route, saved))
    try:
        for k in keys:
            srv_sysctl(k, 0)
        tplab.run(["ip", "-n", SRV_NS, "route", "replace"] + route_argv(route) + ["advmss", "1000"],
                  timeout=10, check=True)
        r = tp.run(["-o", "json", "handshake", TARGET, "--mss", "1234", "--wscale", "5", "--sack",
                    "--ts"])
        require_ok_json(c, r, 0, "open")
        p0 = r.probe(0)
        neg = p0.get("negotiated") or {}
        c.eq(neg.get("mss_peer"), 1000, "negotiated.mss_peer (server route advmss 1000)")
        c.eq(neg.get("mss_effective"), 1000, "negotiated.mss_effective")
        c.eq(neg.get("sack"), False, "negotiated.sack (server tcp_sack=0)")
        c.eq(neg.get("timestamps"), False, "negotiated.timestamps (server tcp_timestamps=0)")
        c.eq(neg.get("window_scaling"), False, "negotiated.window_scaling (server tcp_window_scaling=0)")
        c.eq(neg.get("wscale_peer"), None, "negotiated.wscale_peer")
        kinds = [o.get("kind") for o in p0.get("peer_options") or []]
        c.eq(kinds, ["mss"], "peer_options kinds")
        mss = [o.get("value") for o in p0.get("peer_options") or [] if o.get("kind") == "mss"]
        c.eq(mss, [1000], "peer MSS option value")
    finally:
        for k, v in saved.items():
            srv_sysctl(k, v)
        tplab.run(["ip", "-n", SRV_NS, "route", "replace"] + route_argv(route), timeout=10, check=True)
    after = srv_route()
    c.eq(after, route, "server route restored")
    c.eq({k: srv_sysctl(k) for k in keys}, saved, "server sysctls restored")

    # The defaults negotiate everything again.
    r = tp.run(["-o", "json", "handshake", TARGET, "--mss", "1234", "--wscale", "5", "--sack", "--ts"])
    require_ok_json(c, r, 0, "open")
    neg = r.probe(0).get("negotiated") or {}
    c.eq(neg.get("sack"), True, "negotiated.sack with the defaults")
    c.eq(neg.get("timestamps"), True, "negotiated.timestamps with the defaults")
    c.eq(neg.get("window_scaling"), True, "negotiated.window_scaling with the defaults")
    c.check(isinstance(neg.get("wscale_peer"), int), "negotiated.wscale_peer with the defaults: %r"
            % (neg.get("wscale_peer"),))
    c.check(neg.get("mss_peer") not in (None, 1000), "negotiated.mss_peer with the default route: %r"
            % (neg.get("mss_peer"),))


# --------------------------------------------------------------------------
# 5. JSON Lines schema, -w FILE

@test(timeout=20)
def json_output(c, tp, tmp):
    r = tp.run(["-o", "json", "handshake", TARGET])
    c.note(r.describe())
    lines = r.json_lines()
    c.require(r.parse_error is None, r.parse_error or "")
    c.require(len(lines) >= 2, "expected events and a summary, got %d lines" % len(lines))
    c.check(all(isinstance(o, dict) for o in lines), "every line must be a JSON object")
    for n, o in enumerate(lines[:-1], 1):
        c.check("type" in o, "event line %d has no \"type\": %r" % (n, o))
        c.check(is_number(o.get("t_us")) and o.get("t_us") >= 0,
                "event line %d has no non-negative number \"t_us\": %r" % (n, o))
        c.check(o.get("type") != "summary", "summary before the last line (line %d)" % n)
    s = lines[-1]
    c.eq(s.get("type"), "summary", "last line type")
    c.check("schema" in s, "summary has no \"schema\"")
    c.eq(s.get("command"), "handshake", "summary command")
    c.eq(s.get("target"), TARGET, "summary target")
    c.eq(s.get("verdict"), "open", "summary verdict")
    c.eq(r.returncode, 0, "exit code")
    rtt = (s.get("probes") or [{}])[0].get("rtt_us")
    c.check(is_number(rtt) and rtt > 0, "probes[0].rtt_us must be a positive number: %r" % (rtt,))
    segs = r.events("segment")
    c.eq([e.get("flags") for e in segs], ["S", "S.", "."], "segment event flags")
    c.eq([e.get("dir") for e in segs], ["out", "in", "out"], "segment event directions")


@test(timeout=20)
def write_pcap(c, tp, tmp):
    path = os.path.join(tmp, "run.pcap")
    r = tp.run(["-o", "json", "-w", path, "handshake", TARGET])
    require_ok_json(c, r, 0, "open")
    c.require(os.path.exists(path), "-w %s: no file written" % path)
    pkts = tplab.read_pcap(path)
    c.note("tshark -r %s:\n%s" % (path, format_packets(pkts)))
    c.eq(len(pkts), 3, "packets in the -w file")
    c.eq([p.flag_str() for p in pkts], ["S", "S.", "."], "flags of the packets in the -w file")
    sport = r.probe(0).get("sport")
    if len(pkts) == 3:
        c.eq([(p.src, p.sport) for p in (pkts[0], pkts[2])], [(CLI_IP, sport)] * 2,
             "source of our SYN and ACK")
        c.eq((pkts[1].src, pkts[1].sport, pkts[1].dport), (SRV_IP, PORT_OPEN, sport),
             "SYN-ACK endpoints")
        c.check(pkts[0].time <= pkts[1].time <= pkts[2].time, "pcap timestamps not in order")


@test(timeout=40)
def write_pcap_file_safety(c, tp, tmp):
    """-w never follows a symbolic link, creates its file 0600, and under sudo opens it as
    the user who ran sudo (SUDO_UID/SUDO_GID), who then owns it."""
    shared = tempfile.mkdtemp(prefix="tcpprobe_w_", dir="/tmp")
    try:
        os.chmod(shared, 0o1777)
        # A symlink to a root-only file: refused, the file untouched (it was overwritten).
        secret = os.path.join(tmp, "secret")
        with open(secret, "w") as f:
            f.write("root only\n")
        os.chmod(secret, 0o600)
        link = os.path.join(shared, "link.pcap")
        os.symlink(secret, link)
        r = tp.run(["-w", link, "handshake", TARGET])
        c.note(r.describe())
        c.eq(r.returncode, 64, "exit code with -w pointing at a symlink")
        c.check("symbolic link" in r.stderr and link in r.stderr, "the error does not name the link")
        with open(secret) as f:
            c.eq(f.read(), "root only\n", "contents of the symlink's target")

        # A new file: mode 0600, a pcap of the run.
        new = os.path.join(shared, "new.pcap")
        r = tp.run(["-o", "json", "-w", new, "handshake", TARGET], wrapper=["sh", "-c", "umask 022; exec \"$@\"", "sh"])
        require_ok_json(c, r, 0, "open")
        st = os.stat(new)
        c.eq(oct(st.st_mode & 0o7777), oct(0o600), "mode of the new -w file")
        c.eq(len(tplab.read_pcap(new)), 3, "packets in the -w file")

        # Under sudo: the user's file, and no file where only root may write.
        env = ["env", "SUDO_UID=65534", "SUDO_GID=65534"]
        mine = os.path.join(shared, "mine.pcap")
        r = tp.run(["-o", "json", "-w", mine, "handshake", TARGET], wrapper=env)
        require_ok_json(c, r, 0, "open")
        st = os.stat(mine)
        c.eq((st.st_uid, st.st_gid), (65534, 65534), "owner of the -w file under sudo")
        c.eq(len(tplab.read_pcap(mine)), 3, "packets in the user's -w file")
        rootonly = tempfile.mkdtemp(prefix="tcpprobe_root_", dir="/tmp")
        try:
            os.chmod(rootonly, 0o700)
            r = tp.run(["-w", os.path.join(rootonly, "x.pcap"), "handshake", TARGET], wrapper=env)
            c.note(r.describe())
            c.eq(r.returncode, 64, "exit code writing into a root-only directory under sudo")
            c.check("Permission denied" in r.stderr, "the error does not say why")
            c.check(not os.path.exists(os.path.join(rootonly, "x.pcap")), "file created in a root-only directory")
        finally:
            shutil.rmtree(rootonly, ignore_errors=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# --------------------------------------------------------------------------
# 6. the RST guard (listening sockets by default, or an nft table) lives exactly as long
#    as the process

GUARD_KINDS = {"socket": [], "nft": ["--rst-guard", "nft"]}


def wait_for_table(c, p, argv):
    tables = tplab.wait_until(tplab.tcpprobe_guards, 3.0)
    if not tables:
        p.kill()
        r = tplab.Tcpprobe.finish(p, argv)
        c.note(r.describe())
    c.require(tables, "no tcpprobe RST guard (nft table or listening socket) in %s while tcpprobe runs: %r"
              % (CLI_NS, tplab.nft_tables()))
    return tables


def check_guard_kind(c, kind, guards, what):
    """The guard seen is of the kind asked for: one listening socket of tcpprobe's, or one
    tcpprobe_ table, and not the other."""
    tables = [g for g in guards if "tcpprobe_" in g]
    listeners = [g for g in guards if '"tcpprobe"' in g]
    if kind == "nft":
        c.check(len(tables) == 1 and not listeners, "%s: expected one tcpprobe_ table only: %r" % (what, guards))
    else:
        c.check(len(listeners) == 1 and not tables and (CLI_IP + ":") in listeners[0],
                "%s: expected one listening socket on %s only: %r" % (what, CLI_IP, guards))


def check_no_table(c, when, wait=0.0):
    """Here the table must be gone the moment tcpprobe has exited, unless told to wait."""
    tplab.check_no_table(c, when, wait)


@test(timeout=40)
def nft_table_normal_run(c, tp, tmp):
    for kind, opts in GUARD_KINDS.items():
        check_no_table(c, "before the %s run" % kind)
        p, argv = tp.start(opts + ["-o", "json", "handshake", TARGET, "--linger", "1500ms"])
        check_guard_kind(c, kind, wait_for_table(c, p, argv), "--rst-guard %s" % kind)
        r = tplab.Tcpprobe.finish(p, argv, timeout=10)
        s = require_ok_json(c, r, 0, "open")
        c.eq(s.get("rst_guard_kind"), kind, "summary.rst_guard_kind (--rst-guard %s)" % kind)
        # Completed in userspace: the local kernel sent no RST of its own.
        kernel_rst = [e for e in r.events("segment") if e.get("ours") is False and "R" in str(e.get("flags"))]
        c.check(not kernel_rst, "--rst-guard %s: kernel RST seen: %r" % (kind, kernel_rst))
        check_no_table(c, "after a normal run (--rst-guard %s)" % kind, wait=0.0)


def interrupted_run(c, tp, json_out, sig, opts=()):
    args = list(opts) + (["-o", "json"] if json_out else []) + \
        ["handshake", "%s:%d" % (SRV_IP, PORT_DROP), "--timeout", "10s"]
    t0 = time.monotonic()
    p, argv = tp.start(args)
    tables = wait_for_table(c, p, argv)
    time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))
    c.check(p.poll() is None, "tcpprobe ended before the signal")
    c.note("tables while running: %r" % tables)
    p.send_signal(sig)
    r = tplab.Tcpprobe.finish(p, argv, timeout=10)
    c.note(r.describe())
    return r


@test(timeout=40)
def nft_table_sigint(c, tp, tmp):
    check_no_table(c, "before the test")
    r = interrupted_run(c, tp, False, signal.SIGINT)
    c.eq(r.returncode, 130, "exit code after SIGINT (text)")
    c.check("interrupted" in r.stdout, "text output after SIGINT does not say \"interrupted\"")
    c.check("verdict" in r.stdout, "text summary (\"verdict\") not printed after SIGINT")
    check_no_table(c, "after SIGINT (text run)", wait=2.0)

    r = interrupted_run(c, tp, True, signal.SIGINT)
    c.eq(r.returncode, 130, "exit code after SIGINT (json)")
    lines = r.json_lines()
    c.check(r.parse_error is None, r.parse_error or "")
    s = r.summary()
    c.check(s is not None, "last JSON line after SIGINT is not a summary")
    if s is not None:
        c.eq(s.get("interrupted"), True, "summary.interrupted")
        c.eq(s.get("command"), "handshake", "summary.command")
    check_no_table(c, "after SIGINT (json run)", wait=2.0)


@test(timeout=40)
def nft_table_double_sigint(c, tp, tmp):
    """Ctrl-C twice: the second signal exits at once with 130, and the kernel removes the
    table (flags owner) with the process."""
    check_no_table(c, "before the test")
    p, argv = tp.start(["-o", "json", "handshake", "%s:%d" % (SRV_IP, PORT_DROP), "--timeout", "10s"])
    wait_for_table(c, p, argv)
    c.check(p.poll() is None, "tcpprobe ended before the signals")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGINT)
    r = tplab.Tcpprobe.finish(p, argv, timeout=10)
    took = time.monotonic() - t0
    c.note(r.describe())
    c.eq(r.returncode, 130, "exit code after SIGINT twice")
    c.check(took < 1.0, "tcpprobe took %.3f s to exit after two SIGINTs" % took)
    check_no_table(c, "after SIGINT twice", wait=1.0)


@test(timeout=40)
def nft_table_sigint_is_prompt(c, tp, tmp):
    """One SIGINT while the loop waits for a far deadline: the run ends at once (the
    signal wakes the wait), not up to a second later."""
    worst = 0.0
    for i in range(5):
        p, argv = tp.start(["-o", "json", "handshake", "%s:%d" % (SRV_IP, PORT_DROP), "--timeout", "10s"])
        wait_for_table(c, p, argv)
        time.sleep(0.05 + 0.07 * i)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        r = tplab.Tcpprobe.finish(p, argv, timeout=10)
        worst = max(worst, time.monotonic() - t0)
        c.eq(r.returncode, 130, "exit code after SIGINT (run %d)" % i)
        s = r.summary()
        c.check(s is not None and s.get("interrupted") is True, "run %d: no interrupted summary" % i)
    c.check(worst < 0.5, "slowest exit after SIGINT: %.3f s" % worst)
    check_no_table(c, "after the SIGINT runs", wait=1.0)


@test(timeout=60)
def sigint_during_setup(c, tp, tmp):
    """Ctrl-C while tcpprobe is still opening the capture and the nft table: no SYN may
    leave after the signal (the first SYN once went out all the same)."""
    pcap = os.path.join(tmp, "cli.pcap")
    signalled = []
    with Capture(CLI_NS, CLI_IF, pcap, bpf="tcp") as cap:
        for delay in [0.002 + 0.006 * i for i in range(14)]:
            p, argv = tp.start(["-o", "json", "handshake", "%s:%d" % (SRV_IP, PORT_DROP), "--timeout", "3s"])
            time.sleep(delay)
            t_sig = time.time()
            p.send_signal(signal.SIGINT)
            r = tplab.Tcpprobe.finish(p, argv, timeout=10)
            signalled.append((delay, t_sig, time.time()))
            # 130 once the handler is installed; killed by SIGINT (-2) if it came before.
            c.check(r.returncode in (130, -signal.SIGINT), "delay %.3f s: exit %s" % (delay, r.returncode))
            if r.returncode not in (130, -signal.SIGINT):
                c.note(r.describe())
    syns = [p for p in cap.packets() if p.src == CLI_IP and p.flag_str() == "S"]
    c.note("SYNs: %s; signals at %r" % (format_packets(syns), signalled))
    for delay, t_sig, t_end in signalled:
        late = [p for p in syns if t_sig + 0.002 < (p.time or 0) <= t_end]
        c.check(not late, "SYN sent %.1f ms after the SIGINT (delay %.3f s)"
                % (((late[0].time or 0) - t_sig) * 1000 if late else 0, delay))
    check_no_table(c, "after the interrupted setups", wait=1.0)


@test(timeout=40)
def nft_table_sigkill(c, tp, tmp):
    for kind, opts in GUARD_KINDS.items():
        check_no_table(c, "before the %s run" % kind)
        r = interrupted_run(c, tp, True, signal.SIGKILL, opts)
        c.eq(r.returncode, -signal.SIGKILL, "tcpprobe killed by SIGKILL (--rst-guard %s)" % kind)
        check_no_table(c, "2 s after SIGKILL (--rst-guard %s)" % kind, wait=2.0)


@test(timeout=40)
def nft_tables_across_pid_namespaces(c, tp, tmp):
    """Two runs, each PID 1 of its own PID namespace, in one network namespace: each gets
    a table of its own (once both were tcpprobe_1, and the second failed with a
    misleading "CAP_NET_ADMIN is required")."""
    check_no_table(c, "before the test")
    wrapper = ["unshare", "--pid", "--fork"]
    runs = []
    for _ in range(2):
        argv = tp.argv(["--rst-guard", "nft", "-o", "json", "handshake", TARGET, "--linger", "2s"], wrapper=wrapper)
        runs.append((subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), argv))
    tables = tplab.wait_until(lambda: len(tplab.tcpprobe_tables()) >= 2 and tplab.tcpprobe_tables(), 3.0)
    c.note("tables while both run: %r" % (tables,))
    results = [tplab.Tcpprobe.finish(p, argv, timeout=15) for p, argv in runs]
    for i, r in enumerate(results):
        c.note(r.describe())
        c.eq(r.returncode, 0, "exit code of run %d" % i)
        s = r.summary()
        c.check(s is not None and s.get("verdict") == "open", "run %d: verdict %r" % (i, s and s.get("verdict")))
    c.check(tables and len(tables) == 2 and tables[0] != tables[1],
             "two runs did not hold two tables at once: %r" % (tables,))
    for t in tables or []:
        name = t.split()[-1]
        suffix = name[len("tcpprobe_1_"):]
        c.check(name.startswith("tcpprobe_1_") and len(suffix) == 8 and all(ch in "0123456789abcdef" for ch in suffix),
                "table name %r is not tcpprobe_1_<8 hex digits>" % name)
    check_no_table(c, "after both runs", wait=1.0)


# --------------------------------------------------------------------------
# 7. bad input: exit 64, one line on stderr naming the bad value, nothing sent

OPT38 = "30:" + "ab" * 38


BAD_INPUTS = [
    (["handshake", SRV_IP], SRV_IP),
    (["handshake", SRV_IP + ":99999"], "99999"),
    (["handshake", TARGET, "--option", OPT38, "--mss", "1"], "40"),
    (["handshake", TARGET, "--wscale", "15"], "15"),
    (["handshake", tplab.NET + ".255:80"], tplab.NET + ".255"),
    (["handshake", "255.255.255.255:80"], "255.255.255.255"),
    (["handshake", "224.0.0.1:80"], "224.0.0.1"),
    (["handshake", "0.0.0.0:80"], "0.0.0.0"),
    (["handshake", "[::1]:80"], "::1"),
    (["frobnicate", TARGET], "frobnicate"),
    # A global option's value is not the command: the unknown word after it is named.
    (["-v", "--rst-guard", "nft", "frobnicate", TARGET], "frobnicate"),
    (["--rst-guard", "iptables", "handshake", TARGET], "iptables"),
    (["handshake", TARGET, "--frobnicate"], "--frobnicate"),
    (["handshake", TARGET, "--flags", "bogus"], "bogus"),
    # -w - would mix pcap bytes into the results on stdout.
    (["-w", "-", "handshake", TARGET], "-w -"),
    (["-o", "json", "-w", "-", "handshake", TARGET], "-w -"),
    # A bad \x escape once crashed (SIGSEGV); @/dev/zero ran out of memory; @/etc was an
    # empty request; more than 64 KiB is refused.
    (["teardown", TARGET, "--request", "\\x::"], "\\x::"),
    (["teardown", TARGET, "--request", "\\x0x"], "\\x0x"),
    (["teardown", TARGET, "--request", "@/dev/zero"], "/dev/zero"),
    (["teardown", TARGET, "--request", "@/etc"], "/etc"),
    (["teardown", TARGET, "--request", "x" * 65537], "65537 bytes"),
]


@test(timeout=90)
def bad_input(c, tp, tmp):
    pcap = os.path.join(tmp, "cli.pcap")
    # Connections that already exist (earlier tests) are not ours to count.
    old_ports = {int(peer.rsplit(":", 1)[1]) for _, _, peer in tplab.ss_sockets(SRV_NS)
                 if peer.startswith(CLI_IP + ":")}
    windows = []
    with Capture(CLI_NS, "any", pcap, bpf="tcp", max_seconds=80) as cap:
        for args, needle in BAD_INPUTS:
            t0 = time.time()
            r = tp.run(args, timeout=15)
            windows.append((" ".join(args), t0, time.time()))
            what = "tcpprobe %s" % " ".join(args)
            ok = c.check(r.returncode == 64, "%s: exit %s, expected 64" % (what, r.returncode))
            lines = r.stderr.splitlines()
            ok &= c.check(len(lines) == 1 and lines[0].strip(),
                          "%s: expected exactly one stderr line, got %d" % (what, len(lines)))
            ok &= c.check(needle in r.stderr, "%s: error does not name the bad value %r"
                          % (what, needle))
            if not ok:
                c.note(r.describe())
    pkts = [p for p in cap.packets()
            if not (p.src == SRV_IP and p.dport in old_ports)
            and not (p.src == CLI_IP and p.sport in old_ports)]
    for p in pkts:
        cases = [w[0] for w in windows if w[1] - 0.05 <= (p.time or 0) <= w[2] + 0.05]
        c.check(False, "TCP packet sent during bad-input case %s: %s" % (cases or "?", p))


@test(timeout=30)
def port_range_fd_limit(c, tp, tmp):
    """HOST:1-65535 with too few descriptors: one line naming RLIMIT_NOFILE and what to do
    (it once was "socket: Too many open files"), exit 69, nothing sent."""
    pcap = os.path.join(tmp, "cli.pcap")
    with Capture(CLI_NS, CLI_IF, pcap, bpf="tcp") as cap:
        r = tp.run(["handshake", "%s:1-65535" % SRV_IP], wrapper=["prlimit", "--nofile=1024:1024"], timeout=20)
    c.note(r.describe())
    c.eq(r.returncode, 69, "exit code")
    lines = r.stderr.splitlines()
    c.eq(len(lines), 1, "stderr lines")
    for needle in ("RLIMIT_NOFILE", "1024", "65535 flows", "fewer ports"):
        c.check(needle in r.stderr, "the error does not say %r" % needle)
    pkts = cap.packets()
    c.check(not pkts, "TCP packets sent:\n" + format_packets(pkts))


# --------------------------------------------------------------------------
# 8. --stale-syn

@test(timeout=20)
def stale_syn(c, tp, tmp):
    r = tp.run(["-o", "json", "handshake", TARGET, "--stale-syn", "--ts"])
    require_ok_json(c, r, 0, "open")
    st = r.probe(0).get("stale_syn")
    c.require(isinstance(st, dict), "probes[0].stale_syn missing: %r" % (st,))
    c.eq(st.get("first_answered"), True, "stale_syn.first_answered")
    c.eq(st.get("second_answer"), ".", "stale_syn.second_answer")
    c.eq(st.get("second_answer_acks_old"), True, "stale_syn.second_answer_acks_old")
    c.eq(st.get("reset_sent"), True, "stale_syn.reset_sent")
    c.eq(r.probe(0).get("verdict"), "open", "probes[0].verdict")


# --------------------------------------------------------------------------
# 9. --count 3 --interval 100ms

@test(timeout=20)
def count_interval(c, tp, tmp):
    r = tp.run(["-o", "json", "handshake", TARGET, "--count", "3", "--interval", "100ms"])
    s = require_ok_json(c, r, 0, "open")
    probes = s.get("probes") or []
    c.eq(len(probes), 3, "number of probes")
    sports = [p.get("sport") for p in probes]
    c.eq(len(set(sports)), 3, "distinct source ports %r" % sports)
    c.eq([p.get("verdict") for p in probes], ["open"] * 3, "probe verdicts")
    c.eq(s.get("sent"), 3, "summary.sent")
    c.eq(s.get("answered"), 3, "summary.answered")
    rtt = s.get("rtt") or {}
    for k in ("min_us", "avg_us", "max_us", "mdev_us"):
        c.check(is_number(rtt.get(k)) and rtt.get(k) >= 0, "summary.rtt.%s: %r" % (k, rtt.get(k)))
    if all(is_number(rtt.get(k)) for k in ("min_us", "avg_us", "max_us")):
        c.check(0 < rtt["min_us"] <= rtt["avg_us"] <= rtt["max_us"], "rtt min <= avg <= max: %r" % rtt)
        per = [p.get("rtt_us") for p in probes]
        if all(is_number(x) for x in per):
            c.check(abs(rtt["min_us"] - min(per)) <= 1 and abs(rtt["max_us"] - max(per)) <= 1,
                    "summary rtt min/max %r vs probes' rtt_us %r" % (rtt, per))
    syn_t = [e.get("t_us") for e in r.events("segment") if e.get("flags") == "S" and e.get("dir") == "out"]
    c.eq(len(syn_t), 3, "SYN segment events")
    if len(syn_t) == 3:
        gaps = [b - a for a, b in zip(syn_t, syn_t[1:])]
        c.check(all(90_000 <= g <= 300_000 for g in gaps), "gaps between SYNs %r µs, expected ~100 ms"
                % gaps)


# --------------------------------------------------------------------------
# 10. the RST guard

@test(timeout=30)
def rst_guard_default(c, tp, tmp):
    pcap = os.path.join(tmp, "srv.pcap")
    with Capture(SRV_NS, SRV_IF, pcap) as cap:
        r = tp.run(["-o", "json", "handshake", TARGET])
        s = require_ok_json(c, r, 0, "open")
        sport = r.probe(0).get("sport")
        time.sleep(0.2)
    c.eq(s.get("rst_guard"), True, "summary.rst_guard")
    kernel_rst = [e for e in r.events("segment") if e.get("ours") is False and "R" in str(e.get("flags"))]
    c.check(not kernel_rst, "kernel RST reported although the guard is on: %r" % kernel_rst)
    rsts = [p for p in client_packets(cap.packets(), sport) if p.has("R")]
    c.check(not rsts, "RST from the client on the wire with the guard on:\n" + format_packets(rsts))
    c.eq(r.probe(0).get("final_state"), "ESTABLISHED", "probes[0].final_state")


@test(timeout=30)
def no_rst_guard(c, tp, tmp):
    r = tp.run(["-o", "json", "--no-rst-guard", "handshake", TARGET])
    s = require_ok_json(c, r, 0, "open")
    c.eq(s.get("rst_guard"), False, "summary.rst_guard")
    c.eq(s.get("rst_guard_kind"), None, "summary.rst_guard_kind")
    kernel_rst = [e for e in r.events("segment") if e.get("ours") is False and "R" in str(e.get("flags"))]
    c.check(kernel_rst, "no segment event with ours:false and an R flag (the local kernel's RST)")
    notes = [e for e in r.events("note") if e.get("severity") == "anomaly"
             and "kernel" in str(e.get("text")).lower()]
    c.check(notes, "no note with severity \"anomaly\" mentioning the local kernel; notes: %r"
            % r.events("note"))


# --------------------------------------------------------------------------
# 11. loopback inside the client namespace

LISTENER = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
time.sleep(float(sys.argv[2]))
"""
LOOP_PORT = 18080


class LoopbackListener:
    def __enter__(self):
        self.p = subprocess.Popen(tplab.ns_cmd(CLI_NS, ["timeout", "25", sys.executable, "-c", LISTENER,
                                                        str(LOOP_PORT), "20"]))
        ok = tplab.wait_until(lambda: any(l == "127.0.0.1:%d" % LOOP_PORT
                                          for _, l, _ in tplab.ss_sockets(CLI_NS, ("-Hltn",))), 5.0)
        if not ok:
            self.__exit__()
            raise TestFailure("loopback listener on 127.0.0.1:%d in %s did not start" % (LOOP_PORT, CLI_NS))
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.terminate()          # `timeout` passes SIGTERM on to python
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        return False


@test(timeout=40)
def loopback(c, tp, tmp):
    with LoopbackListener():
        r = tp.run(["-o", "json", "handshake", "127.0.0.1:%d" % LOOP_PORT])
    s = require_ok_json(c, r, 0, "open")
    segs = r.events("segment")
    c.eq(len(segs), 3, "segment events")
    c.eq([e.get("flags") for e in segs], ["S", "S.", "."], "segment flags")
    c.eq([e.get("ours") for e in segs if e.get("dir") == "out"], [True] * 2, "our segments are ours")
    c.eq([("ours" in e) for e in segs if e.get("dir") == "in"], [False], "incoming segments carry no 'ours'")
    c.eq(s.get("interface"), "lo", "summary.interface")
    c.eq(s.get("target"), "127.0.0.1:%d" % LOOP_PORT, "summary.target")


@test(timeout=40)
def loopback_no_false_anomaly(c, tp, tmp):
    # On lo the kernel leaves the TCP checksum of its own segments to "offload"
    # (CHECKSUM_PARTIAL), so the capture shows a partial checksum. That is not
    # the peer's fault and must not be reported as an anomaly.
    with LoopbackListener():
        r = tp.run(["-o", "json", "handshake", "127.0.0.1:%d" % LOOP_PORT])
    s = require_ok_json(c, r, 0, "open")
    c.eq(s.get("anomaly_count"), 0, "summary.anomaly_count for a clean loopback handshake")
    c.eq(r.probe(0).get("anomalies"), [], "probes[0].anomalies for a clean loopback handshake")


# --------------------------------------------------------------------------
# 12. privileges

def privilege_case(c, tp, tmp, wrapper, capname):
    pcap = os.path.join(tmp, "cli.pcap")
    with Capture(CLI_NS, CLI_IF, pcap, bpf="tcp") as cap:
        r = tp.run(["handshake", TARGET], wrapper=wrapper)
    c.note(r.describe())
    c.require(r.returncode not in (126, 127),
              "could not execute %s as the test user (path not accessible?)" % tp.binary)
    c.eq(r.returncode, 77, "exit code")
    lines = r.stderr.splitlines()
    c.eq(len(lines), 1, "stderr lines")
    c.check(capname in r.stderr, "message does not name %s" % capname)
    c.check("setcap" in r.stderr, "message does not mention setcap")
    pkts = cap.packets()
    c.check(not pkts, "TCP packets sent without the privilege:\n" + format_packets(pkts))


@test(timeout=30)
def unprivileged_user(c, tp, tmp):
    privilege_case(c, tp, tmp, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                   "CAP_NET_RAW")


@test(timeout=30)
def missing_cap_net_admin(c, tp, tmp):
    # root, CAP_NET_RAW kept, CAP_NET_ADMIN removed from the bounding set.
    privilege_case(c, tp, tmp, ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"],
                   "CAP_NET_ADMIN")


# --------------------------------------------------------------------------

if __name__ == "__main__":
    sys.exit(tplab.main(TESTS))
