#!/usr/bin/env python3
"""Privileged integration tests of `tcpprobe profile` against the lab's real Linux
server (port 80: HTTP/1.0, closes first) and the lab's foreign peer:

  quick_compare  --quick under two sysctl sets of the server namespace:
                   A: tcp_synack_retries=2 tcp_rfc1337=0 tcp_timestamps=1
                   B: tcp_synack_retries=1 tcp_rfc1337=1 tcp_timestamps=0
                 each profile shows the configured values (and the inferred
                 Linux settings); B --compare A lists exactly the three rows
                 those sysctls change, both values, exit 1; A --compare A's own
                 file lists nothing, exit 0; a bad file is exit 64 and sends
                 nothing.
  full_linux     the full profile (no keepalive, no idle) with
                 tcp_synack_retries=2 tcp_orphan_retries=2 tcp_fin_timeout=5
                 tcp_rfc1337=0: every inferred setting equals the namespace's
                 (tcp_orphan_retries: none or the right one; see the test),
                 TIME-WAIT 60-62.6 s, family Linux, no middlebox, and the run
                 takes at most 2 x its longest experiment (TIME-WAIT, 60 s). Slow.
  mss_clamp      --quick against port 8003 (5000 bytes after our FIN) with and
                 without an nft rule in the path that sets the MSS of our SYNs to
                 536: with it, path.peer_mss is 536 and the clamp is named; without
                 it, 1460 (ours) and no middlebox.
  synproxy       --quick through the kernel's SYN proxy in the path (nft
                 `synproxy`, the path's own TTL 255): its SYN-ACK (TTL 255,
                 window 0) against the server's data (TTL 64) is named.
  synack_ttl     --quick with the SYN-ACKs' TTL rewritten to 100 in the path
                 (nft `ip ttl set`, one direction, SYN-ACKs only): named, nothing
                 else is.
  idle_reset     --quick --idle 20s through the path's forgetting firewall (5 s,
                 answering with its own RST, TTL 255): the idle timeout about
                 5 s and the foreign RST named.
  keepalive      --quick --keepalive against port 8007 (TCP_KEEPIDLE 3 s,
                 TCP_KEEPINTVL 1 s, TCP_KEEPCNT 4): 3 s, 1 s, 4 probes.
  foreign        --quick against foreign_peer.py (3 s SYN-ACK RTO doubling, a RST
                 at the end; RFC 1337): no Linux setting is inferred, the family
                 named is not Linux, the SYN-ACK schedule is described.

Exit 0 pass, 1 fail, 77 skipped. Traffic stays inside the lab.
"""

import contextlib
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import PATH_NS, SRV_IP, SRV_NS, PORT_OPEN, Firewall, ForeignPeer, NftTable, Sysctl  # noqa: E402

PORT_SEND_AFTER_EOF = 8003   # 5000 bytes after our FIN: segments cut at the peer's MSS
PORT_KEEPALIVE = 8007

TESTS = {}
SLOW = []


def test(timeout, slow=False):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        if slow:
            SLOW.append(fn.__name__)
        return fn
    return deco


def target(port=PORT_OPEN):
    return "%s:%d" % (SRV_IP, port)


def rows(summary):
    return {r["key"]: r for r in (summary.get("profile") or {}).get("rows", [])}


def value(c, rs, key):
    c.require(key in rs, "row %s present (rows: %s)" % (key, sorted(rs)))
    return rs[key].get("value")


def inferred(rs, key):
    inf = rs.get(key, {}).get("inferred")
    return None if inf is None else (inf.get("sysctl"), inf.get("value"))


def profile(c, tp, args, timeout, code=0, verdict="profiled"):
    t0 = time.monotonic()
    r = tplab.run_json(c, tp, ["profile"] + list(args), timeout=timeout)
    elapsed = time.monotonic() - t0
    s = r.summary()
    c.require(s is not None, "no summary line (exit %s): %s" % (r.returncode, r.stderr[-2000:]))
    c.eq(r.returncode, code, "exit status")
    c.eq(s.get("verdict"), verdict, "verdict")
    c.require(isinstance(s.get("profile"), dict), "summary.profile is an object")
    return r, s, elapsed


def check_set(c, rs, name, synack, rfc1337, timestamps):
    """The rows the three sysctls of quick_compare govern show the configured values."""
    c.eq(value(c, rs, "synack.retransmissions"), synack, "%s: SYN-ACK retransmissions" % name)
    c.eq(inferred(rs, "synack.retransmissions"), ("tcp_synack_retries", synack), "%s: tcp_synack_retries" % name)
    c.eq(value(c, rs, "time_wait.rfc1337"), bool(rfc1337), "%s: TIME-WAIT survives an in-window RST" % name)
    c.eq(inferred(rs, "time_wait.rfc1337"), ("tcp_rfc1337", rfc1337), "%s: tcp_rfc1337" % name)
    c.eq(value(c, rs, "handshake.timestamps"), bool(timestamps), "%s: timestamps" % name)
    c.eq(inferred(rs, "handshake.timestamps"), ("tcp_timestamps", timestamps), "%s: tcp_timestamps" % name)


@test(timeout=120, slow=True)  # three --quick runs of about 10 s each
def quick_compare(c, tp, tmp):
    saved = os.path.join(tmp, "a.jsonl")
    with Sysctl(SRV_NS, "tcp_synack_retries", 2), Sysctl(SRV_NS, "tcp_rfc1337", 0), \
            Sysctl(SRV_NS, "tcp_timestamps", 1):
        ra, a, ea = profile(c, tp, ["--quick", target()], timeout=40)
    with open(saved, "w") as f:
        f.write(ra.stdout)
    ar = rows(a)
    check_set(c, ar, "A", synack=2, rfc1337=0, timestamps=1)
    c.eq(a["profile"]["family"]["name"], "Linux", "A: family")
    c.eq(a["profile"]["middlebox"], [], "A: no middlebox")
    c.check(ea < 25, "A: --quick took %.1f s (about 10 s expected)" % ea)

    with Sysctl(SRV_NS, "tcp_synack_retries", 1), Sysctl(SRV_NS, "tcp_rfc1337", 1), \
            Sysctl(SRV_NS, "tcp_timestamps", 0):
        _, b, _ = profile(c, tp, ["--quick", target(), "--compare", saved], timeout=40, code=1, verdict="differs")
    br = rows(b)
    check_set(c, br, "B", synack=1, rfc1337=1, timestamps=0)
    diffs = {d["key"]: d for d in b["compare"]["differences"]}
    # handshake.window follows tcp_timestamps: Linux offers a whole number of segments of
    # its MSS less the option bytes (with timestamps 45 x 1448 = 65160, without 44 x 1460).
    c.eq(sorted(diffs), ["handshake.timestamps", "handshake.window", "synack.retransmissions", "time_wait.rfc1337"],
         "B --compare A: exactly the rows the changed sysctls govern")
    c.eq(b["compare"]["same"], False, "compare.same")
    for d in diffs.values():
        c.check(d["ours"] and d["saved"] and d["ours"] != d["saved"], "both values shown: %r" % d)

    # The same profile against itself: nothing differs, exit 0.
    with Sysctl(SRV_NS, "tcp_synack_retries", 2), Sysctl(SRV_NS, "tcp_rfc1337", 0), \
            Sysctl(SRV_NS, "tcp_timestamps", 1):
        _, again, _ = profile(c, tp, ["--quick", target(), "--compare", saved], timeout=40, code=0, verdict="same")
    c.eq(again["compare"]["differences"], [], "A --compare A: no difference")

    # A file that is not a saved profile: one line, exit 64, nothing sent.
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        f.write('{"type": "summary", "command": "handshake"}\n')
    r = tp.run(["profile", "--quick", target(), "--compare", bad], timeout=10)
    c.eq(r.returncode, 64, "bad --compare file: exit status")
    c.eq(len(r.stderr.strip().splitlines()), 1, "one line of error: %r" % r.stderr)
    c.check("--compare" in r.stderr, "the error names --compare: %r" % r.stderr)
    r = tp.run(["profile", "--quick", target(), "--compare", os.path.join(tmp, "missing.json")], timeout=10)
    c.eq(r.returncode, 64, "missing --compare file: exit status")


@test(timeout=200, slow=True)
def full_linux(c, tp, tmp):
    with Sysctl(SRV_NS, "tcp_synack_retries", 2), Sysctl(SRV_NS, "tcp_orphan_retries", 2), \
            Sysctl(SRV_NS, "tcp_fin_timeout", 5), Sysctl(SRV_NS, "tcp_rfc1337", 0), \
            Sysctl(SRV_NS, "tcp_timestamps", 1), Sysctl(SRV_NS, "tcp_sack", 1), \
            Sysctl(SRV_NS, "tcp_window_scaling", 1):
        _, s, elapsed = profile(c, tp, [target()], timeout=190)
    rs = rows(s)
    c.note("profile rows:\n" + "\n".join("%s = %s (%s)" % (k, r.get("text"), r.get("inferred")) for k, r in rs.items()))
    want = {"synack.retransmissions": ("tcp_synack_retries", 2),
            "fin_wait_2.lifetime": ("tcp_fin_timeout", 5),
            "time_wait.rfc1337": ("tcp_rfc1337", 0),
            "handshake.timestamps": ("tcp_timestamps", 1),
            "handshake.sack": ("tcp_sack", 1),
            "handshake.wscale": ("tcp_window_scaling", 1)}
    for key, setting in want.items():
        c.eq(inferred(rs, key), setting, "%s: inferred Linux setting" % key)
    # The FIN schedule of this server (it answers, then closes: FIN-WAIT-1, never ACKed)
    # is often inconclusive on this lab (`retransmit --peer-closes-first` too): it may
    # name no value, but never a wrong one.
    c.check(inferred(rs, "fin.retransmissions") in (None, ("tcp_orphan_retries", 2)),
            "fin.retransmissions: no wrong tcp_orphan_retries: %r" % (inferred(rs, "fin.retransmissions"),))
    tw = rs.get("time_wait.duration", {}).get("value_us")
    tplab.within(c, tw, 59_500_000, 62_600_000, "TIME-WAIT duration (us)")
    c.eq(value(c, rs, "time_wait.reuse"), True, "TIME-WAIT reuse by a higher ISN")
    c.eq(value(c, rs, "time_wait.reuse_isn"), 65537, "reused ISN = old SND.NXT + 65537")
    c.eq(value(c, rs, "time_wait.fin_reack"), True, "our FIN again is re-ACKed")
    c.eq(value(c, rs, "synack.syncookies"), False, "no SYN cookies")
    c.eq(s["profile"]["family"]["name"], "Linux", "family")
    c.eq(s["profile"]["middlebox"], [], "no middlebox")
    # The longest single experiment is TIME-WAIT's (60-62 s of TIME-WAIT after a set-up);
    # together they must take at most about twice that.
    longest = (tw or 62_600_000) / 1e6
    c.check(elapsed <= 2 * longest, "run time %.1f s <= 2 x %.1f s" % (elapsed, longest))
    c.note("full profile: %.1f s, %s connections" % (elapsed, s["profile"]["connections"]))


def middlebox(s):
    return "\n".join(s["profile"]["middlebox"])


@test(timeout=60)
def mss_clamp(c, tp, tmp):
    # Our SYNs only (not the SYN-ACKs): the server's own MSS stays 1460, so a lower
    # MSS in its data can only be ours lowered on the way.
    rule = ("chain forward { type filter hook forward priority -10; policy accept;\n"
            "  ip daddr %s tcp dport %d tcp flags & (syn | ack) == syn tcp option maxseg size set 536\n}"
            % (SRV_IP, PORT_SEND_AFTER_EOF))
    with NftTable(PATH_NS, "tpclamp", rule, family="bridge"):
        _, s, _ = profile(c, tp, ["--quick", target(PORT_SEND_AFTER_EOF)], timeout=40)
    rs = rows(s)
    c.note("clamped: %s / %s" % (rs.get("path.peer_mss", {}).get("text"), middlebox(s)))
    c.eq(value(c, rs, "handshake.mss"), 1460, "the SYN-ACK still offers the server's own MSS")
    c.eq(value(c, rs, "path.peer_mss"), 536, "the peer sends 524 + 12 option bytes: MSS 536")
    c.check("MSS clamping" in middlebox(s), "the clamp is named: %r" % s["profile"]["middlebox"])
    c.check(rs["path.peer_mss"].get("evidence"), "the row says how it was seen")

    _, s, _ = profile(c, tp, ["--quick", target(PORT_SEND_AFTER_EOF)], timeout=40)
    rs = rows(s)
    c.eq(value(c, rs, "path.peer_mss"), 1460, "no rule: full-sized segments for our MSS")
    c.check("MSS clamping" not in middlebox(s), "no clamp named without the rule: %r" % s["profile"]["middlebox"])


class SynProxy:
    """The kernel's SYN proxy (nft `synproxy`) on the path's bridge, for port 80: SYNs
    untracked, the proxy answers them from the path's own address with its own TTL (255)
    and hands the connection to the server once our ACK has proven the cookie."""

    def __init__(self, port):
        self.port = port
        self.sysctls = [Sysctl(PATH_NS, "net.bridge.bridge-nf-call-iptables", 1),
                        Sysctl(PATH_NS, "ip_default_ttl", 255),
                        Sysctl(PATH_NS, "net.netfilter.nf_conntrack_tcp_loose", 0)]
        body = ("chain pre { type filter hook prerouting priority raw; policy accept;\n"
                "  ip daddr %(ip)s tcp dport %(port)d tcp flags & (fin | syn | rst | ack) == syn notrack\n}\n"
                "chain forward { type filter hook forward priority filter; policy accept;\n"
                "  ip daddr %(ip)s tcp dport %(port)d ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm\n"
                "  ip daddr %(ip)s tcp dport %(port)d ct state invalid drop\n}") % {"ip": SRV_IP, "port": port}
        self.table = NftTable(PATH_NS, "tpsynproxy", body)
        self.addr = "%s.254/24" % tplab.NET  # the proxy's SYN-ACKs need a route back

    def __enter__(self):
        if tplab.run(tplab.ns_cmd(PATH_NS, ["test", "-e", "/proc/sys/net/bridge/bridge-nf-call-iptables"]), timeout=10).returncode:
            tplab.skip("skipped: br_netfilter is not loaded: no conntrack (and no SYN proxy) on the bridge")
        # Undone in reverse order, also when a later step fails.
        with contextlib.ExitStack() as stack:
            for x in self.sysctls:
                stack.enter_context(x)
            tplab.run(tplab.ns_cmd(PATH_NS, ["ip", "addr", "add", self.addr, "dev", "br0"]), timeout=10, check=True)
            stack.callback(tplab.run, tplab.ns_cmd(PATH_NS, ["ip", "addr", "del", self.addr, "dev", "br0"]), timeout=10)
            stack.enter_context(self.table)
            self.undo = stack.pop_all()
        return self

    def __exit__(self, *exc):
        self.undo.close()
        return False


@test(timeout=60)
def synproxy(c, tp, tmp):
    with SynProxy(PORT_OPEN):
        _, s, _ = profile(c, tp, ["--quick", target()], timeout=40)
    rs = rows(s)
    mb = middlebox(s)
    c.note("middlebox:\n" + mb)
    c.check("SYN-ACK TTL 255 but data TTL 64" in mb, "the proxy's SYN-ACK TTL against the server's data: %r" % mb)
    c.check("SYN-ACK with window 0" in mb, "nf_synproxy's window-0 SYN-ACK: %r" % mb)
    c.check("RST with TTL" not in mb, "the server's own RSTs are not foreign: %r" % mb)
    c.eq(value(c, rs, "handshake.window"), 0, "the SYN-ACK's window")


@test(timeout=60)
def synack_ttl(c, tp, tmp):
    rule = ("chain forward { type filter hook forward priority -10; policy accept;\n"
            "  ip saddr %s tcp sport %d tcp flags & (syn | ack) == syn | ack ip ttl set 100\n}" % (SRV_IP, PORT_OPEN))
    with NftTable(PATH_NS, "tpttl", rule, family="bridge"):
        _, s, _ = profile(c, tp, ["--quick", target()], timeout=40)
    mb = s["profile"]["middlebox"]
    c.note("middlebox: %r" % mb)
    c.eq(len(mb), 1, "one middlebox sign")
    c.check(mb and "SYN-ACK TTL 100 but data TTL 64" in mb[0], "named with both TTLs: %r" % mb)
    c.eq(value(c, rows(s), "handshake.ttl"), 128, "the SYN-ACK's TTL read as from 128")


@test(timeout=60)
def idle_reset(c, tp, tmp):
    with Firewall(c, "reset", 5):
        _, s, _ = profile(c, tp, ["--quick", "--idle", "20s", target()], timeout=50)
    rs = rows(s)
    c.note("idle: %s; middlebox %r" % (rs.get("path.idle_timeout", {}).get("text"), s["profile"]["middlebox"]))
    # conntrack's established timeout is checked when a segment arrives: forgotten after
    # 5 s, plus the bracket of the probed connections (2 s apart below 12 s).
    tplab.within(c, rs.get("path.idle_timeout", {}).get("value_us"), 4_000_000, 8_000_000, "path idle timeout (us)")
    c.check("RST with TTL 255 where the peer's segments have TTL 64" in middlebox(s),
            "the firewall's RST named: %r" % s["profile"]["middlebox"])


@test(timeout=60)
def keepalive(c, tp, tmp):
    _, s, elapsed = profile(c, tp, ["--quick", "--keepalive", target(PORT_KEEPALIVE)], timeout=50)
    rs = rows(s)
    c.note("keepalive: %s / %s / %s in %.1f s" % tuple([rs.get(k, {}).get("text") for k in
                                                        ("keepalive.idle", "keepalive.interval", "keepalive.probes")] + [elapsed]))
    # Linux stamps keepalive timers on a 4 ms jiffy and fires them late by a few jiffies.
    tplab.within(c, rs.get("keepalive.idle", {}).get("value_us"), 2_950_000, 3_300_000, "keepalive idle (us)")
    tplab.within(c, rs.get("keepalive.interval", {}).get("value_us"), 950_000, 1_150_000, "keepalive interval (us)")
    c.eq(value(c, rs, "keepalive.probes"), 4, "unanswered probes before the RST")
    c.eq(inferred(rs, "keepalive.probes"), ("tcp_keepalive_probes", 4), "the count as Linux's setting")


@test(timeout=60)
def foreign(c, tp, tmp):
    cfg = {"synack_gaps": [3, 6], "synack_end": "rst", "synack_end_after": 0.5, "tw_rfc1337": True,
           "tw_duration": 30.0}
    with ForeignPeer(9120, cfg):
        _, s, _ = profile(c, tp, ["--quick", target(9120)], timeout=50)
    rs = rows(s)
    c.eq(s["profile"]["linux_settings"], [], "no Linux setting inferred for a foreign stack")
    fam = s["profile"]["family"]
    c.check(fam["name"] != "Linux", "family %r is not Linux" % fam["name"])
    c.check(str(fam["name"] or "").startswith("RFC 1122"), "family %r: a 3 s doubling RTO is RFC 1122's" % fam["name"])
    c.eq(value(c, rs, "synack.retransmissions"), 2, "two SYN-ACK retransmissions (3 s, 6 s)")
    rto = rs.get("synack.initial_rto", {}).get("value_us")
    tplab.within(c, rto, 2_800_000, 3_300_000, "SYN-ACK initial RTO (us)")


if __name__ == "__main__":
    if "--list-slow" in sys.argv:
        print("\n".join(SLOW))
        sys.exit(0)
    sys.exit(tplab.main(TESTS))
