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
  foreign        --quick against foreign_peer.py (3 s SYN-ACK RTO doubling, a RST
                 at the end; RFC 1337): no Linux setting is inferred, the family
                 named is not Linux, the SYN-ACK schedule is described.

Exit 0 pass, 1 fail, 77 skipped. Traffic stays inside the lab.
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import SRV_IP, SRV_NS, PORT_OPEN, ForeignPeer, Sysctl  # noqa: E402

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
