#!/usr/bin/env python3
"""Privileged integration tests of `tcpprobe fin-wait-2`, `keepalive` and `idle`
against the lab's real Linux server (tests/lab/):

  fin_wait_2          port 80 (HTTP/1.0, closes first with close()) with
                      tcp_fin_timeout=7 in the server namespace: bracketed within
                      2 s around 7 s, ended by a RST, inferred tcp_fin_timeout 7.
  fin_wait_2_shutdown port 8006 (shutdown(SHUT_WR), socket kept): no bound seen
                      within --max-duration 6s.
  keepalive           port 8007 (SO_KEEPALIVE, idle 3 s, interval 1 s, 4 probes):
                      all three inferred, the RST one interval after the 4th probe.
  keepalive_send      port 7: our own probes, each answered.
  idle_drop           the path as a firewall forgetting after 20 s (lab.sh firewall
                      drop 20): bracket within 3 s around 20 s, ended in silence.
  idle_reset          the same firewall answering with its own RST (TTL 255): the
                      RST is attributed to the middlebox, not the peer.

Each test also checks the command's run time against the lifetime it measured
(at most 2.5 x, DESIGN's budget for the lifetime engine) and that no nft table
remains.  Exit 0 pass, 1 fail, 77 skipped.  Traffic stays inside the lab.
"""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import PATH_NS, SRV_IP, SRV_NS, Firewall, Sysctl, TestFailure, run  # noqa: E402

PORT_HTTP = 80
PORT_SHUTDOWN = 8006
PORT_KEEPALIVE = 8007
PORT_ECHO = 7

TESTS = {}
within = tplab.within


def test(timeout, slow=False):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        fn.slow = slow
        return fn
    return deco


def target(port):
    return "%s:%d" % (SRV_IP, port)


def timed(c, tp, args, timeout):
    t0 = time.monotonic()
    r = tplab.run_json(c, tp, args, timeout=timeout)
    return r, time.monotonic() - t0


def summary_of(c, r, code, verdict):
    s = r.summary()
    c.require(s is not None, "no summary line (exit %s)" % r.returncode)
    c.eq(r.returncode, code, "exit status")
    c.eq(s.get("verdict"), verdict, "verdict")
    return s


# --------------------------------------------------------------------------
# fin-wait-2

@test(60)
def fin_wait_2(c, tp, tmp):
    with Sysctl(SRV_NS, "tcp_fin_timeout", 7):
        r, wall = timed(c, tp, ["fin-wait-2", target(PORT_HTTP)], timeout=50)
    s = summary_of(c, r, 0, "measured")
    lo, hi = s.get("lower_us"), s.get("upper_us")
    c.require(tplab.is_number(lo) and tplab.is_number(hi), "bracket: %r..%r" % (lo, hi))
    # The socket goes 7 s after our ACK, plus up to one timer-wheel granule (256 ms at
    # HZ=250): the bracket must hold that instant and be at most 2 s wide.
    c.check(lo < 7_300_000 and hi >= 7_000_000, "bracket %d..%d us holds 7.0-7.3 s" % (lo, hi))
    within(c, hi - lo, 0, 2_000_000, "bracket width (us)")
    c.eq(s.get("end"), "rst", "end")
    c.eq(s.get("inferred"), {"sysctl": "tcp_fin_timeout", "value": 7}, "inferred")
    c.eq((s.get("rst") or {}).get("from") in ("peer", "unknown"), True, "the RST's origin is not a middlebox")
    c.eq(s.get("anomalies"), [], "anomalies")
    # Every connection probed with one FIN (plus copies only after silence).
    probes = (s.get("lifetime") or {}).get("probes") or []
    c.check(len(probes) >= 4, "at least 4 connections probed: %d" % len(probes))
    for p in probes:
        ok = (p.get("result") == "alive" and p.get("offset_us") <= lo) or \
             (p.get("result") == "gone" and p.get("offset_us") >= hi)
        c.check(ok, "probe %r: alive at or below the bracket, gone at or above it" % p)
    within(c, wall, 0, 7 * 2.5, "run time (s) vs a 7 s lifetime")
    print("  fin-wait-2: %.3f..%.3f s, run %.1f s (%.2f x 7 s)" % (lo / 1e6, hi / 1e6, wall, wall / 7), flush=True)


@test(40)
def fin_wait_2_shutdown(c, tp, tmp):
    r, wall = timed(c, tp, ["fin-wait-2", target(PORT_SHUTDOWN), "--max-duration", "6s"], timeout=30)
    s = summary_of(c, r, 0, "no-bound")
    within(c, s.get("lower_us"), 6_000_000, 7_000_000, "longest alive offset (us)")
    c.eq(s.get("upper_us"), None, "upper_us")
    probes = (s.get("lifetime") or {}).get("probes") or []
    c.check(probes and all(p.get("result") == "alive" for p in probes), "every probe alive: %r" % probes)


# --------------------------------------------------------------------------
# keepalive

@test(40)
def keepalive(c, tp, tmp):
    r, wall = timed(c, tp, ["keepalive", target(PORT_KEEPALIVE), "--max-wait", "20s"], timeout=30)
    s = summary_of(c, r, 0, "keepalive")
    within(c, s.get("idle_us"), 3_000_000, 3_300_000, "idle_us (TCP_KEEPIDLE 3 s + timer slack)")
    within(c, s.get("interval_us"), 1_000_000, 1_050_000, "interval_us (TCP_KEEPINTVL 1 s)")
    c.eq(s.get("unanswered"), 4, "unanswered probes (TCP_KEEPCNT 4)")
    c.eq(s.get("end"), "rst", "end")
    within(c, s.get("end_after_last_us"), 1_000_000, 1_050_000, "RST after the last probe (one interval)")
    inferred = {i.get("sysctl"): i.get("value") for i in s.get("inferred") or []}
    c.eq(inferred, {"tcp_keepalive_time": 3, "tcp_keepalive_intvl": 1, "tcp_keepalive_probes": 4}, "inferred")
    for p in s.get("probes") or []:
        c.eq(p.get("length"), 0, "Linux's probe carries no data")
    within(c, wall, 0, 2.5 * 7, "run time (s) vs the 7 s keepalive lifetime (3 s + 4 x 1 s)")
    print("  keepalive: idle %.3f s, interval %.3f s, %s probes, run %.1f s" %
          (s.get("idle_us") / 1e6, s.get("interval_us") / 1e6, s.get("unanswered"), wall), flush=True)


@test(30)
def keepalive_send(c, tp, tmp):
    r, _ = timed(c, tp, ["keepalive", target(PORT_ECHO), "--send", "700ms", "--count", "3"], timeout=20)
    s = summary_of(c, r, 0, "answered")
    probes = s.get("probes") or []
    c.eq(len(probes), 3, "probes sent")
    for p in probes:
        c.eq(p.get("answered"), True, "probe answered")
        within(c, p.get("rtt_us"), 1, 100_000, "rtt_us")


# --------------------------------------------------------------------------
# idle

def idle_run(c, tp, mode):
    with Firewall(c, mode, 20):
        r, wall = timed(c, tp, ["idle", target(PORT_ECHO), "--max-idle", "60s"], timeout=90)
    s = summary_of(c, r, 0, "forgotten")
    lo, hi = s.get("lower_us"), s.get("upper_us")
    c.require(tplab.is_number(lo) and tplab.is_number(hi), "bracket: %r..%r" % (lo, hi))
    # conntrack forgets 20 s after the last segment it saw (our last ACK).
    c.check(lo < 20_200_000 and hi >= 19_900_000, "bracket %d..%d us holds 20 s" % (lo, hi))
    within(c, hi - lo, 0, 3_000_000, "bracket width (us)")
    within(c, wall, 0, 20 * 2.5, "run time (s) vs a 20 s idle timeout")
    print("  idle (%s): %.3f..%.3f s, run %.1f s (%.2f x 20 s)" % (mode, lo / 1e6, hi / 1e6, wall, wall / 20), flush=True)
    return s


@test(90, slow=True)
def idle_drop(c, tp, tmp):
    s = idle_run(c, tp, "drop")
    c.eq(s.get("end"), "silence", "end")
    c.eq(s.get("rst"), None, "rst")


@test(90, slow=True)
def idle_reset(c, tp, tmp):
    s = idle_run(c, tp, "reset")
    c.eq(s.get("end"), "rst", "end")
    rst = s.get("rst") or {}
    c.eq(rst.get("from"), "middlebox", "rst.from")
    c.eq(rst.get("ttl"), 255, "rst.ttl (the path's own)")
    c.eq(rst.get("peer_ttl"), 64, "rst.peer_ttl (the server's)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--list-slow"]:
        for name, (fn, _) in TESTS.items():
            if fn.slow:
                print(name)
        sys.exit(0)
    sys.exit(tplab.main(TESTS))
