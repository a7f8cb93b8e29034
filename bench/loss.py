#!/usr/bin/env python3
"""tcpprobe loss bench: how often each command gets its verdict right on a lossy path.

Usage (root):  bench/loss.py [--binary PATH] [--runs N] [--levels 0,10,30] [--parallel N]
                             [--cases TEXT] [--json bench/loss-results.json] [--label TEXT]
      or:      bench/run --only loss [--loss-runs N]     (bench/run --loss: after the suite)

For every command in CASES and every loss level (0 %, 10 %, 30 % random loss in EACH
direction), RUNS independent tcpprobe runs against the real Linux stack of the lab; each
run is classified RIGHT, INCONCLUSIVE or WRONG from its `-o json` summary (the last stdout
line) and its exit code. Prints a Markdown table, the DESIGN §6 loss targets (>= 99 % right
at 10 %, 0 wrong at 30 %) and the wall time; writes every run, and the raw summary of every
run that was not right, to bench/loss-results.json.

Lab: tests/lab/lab.sh, instance TP_LAB=tploss on 198.18.9.0/24 (its own; the other benches
and tests use other instances), server sysctls set as the lab does (they are read back and
recorded as the ground truth), plus tcp_syn_retries=2 in the server namespace for the
`listen` case, whose kernel client runs there.

Loss injection (no netem on this machine): on the path, as tests/integration/tplab.py's
Loss and DropNth do it. The lab has a third namespace, tploss-path, whose bridge br0 joins
the client's and the server's veth pairs. The bench adds one nft table of its own there,
`bridge tploss`, with a forward chain: client->server frames (`ip saddr CLIENT ip daddr
SERVER`) and server->client frames (the other way) each get
`meta l4proto { tcp, icmp } numgen random mod 100 < LOSS drop`. The sender's transmit
always succeeds and the frame is lost afterwards, on the link: tcpprobe's capture on the
client veth sees everything it sends and nothing that was dropped on the way to it, and
the server's kernel sees no local send error.

Why not in the server's own hooks: a drop in the server's IP output or postrouting hook
(family inet) is a *local* send error. Linux reacts to it differently from a loss on the
wire: a SYN-ACK retransmission that fails locally makes the kernel drop the half-open
request at once (reqsk_timer_handler: inet_rtx_syn_ack() != 0 -> drop), so the server
sends 2 SYN-ACKs instead of 1 + tcp_synack_retries, and failed data/FIN sends are retried
on other timers. That would change the ground truth under test.

Network safety: every packet goes to 198.18.9.1/.2 inside the three lab namespaces this
script creates; the lab is torn down in `finally` (also on Ctrl-C, SIGTERM, SIGHUP and
errors). Every subprocess has a timeout, every loop is bounded in count and time, and
the only processes ever signalled are the ones this script started (by their PID).
"""

# ----------------------------------------------------------------------------------------
# The classifier. Strict: a run is RIGHT only if everything it states about the server in
# the columns below matches the lab's configuration; anything it states that does not is
# WRONG. It is INCONCLUSIVE only when it says, in the words listed, that it could not tell.
#
# Every run first:
#   - timed out (no exit within the case's timeout; SIGINT, then SIGKILL) ......... WRONG
#   - exit status not 0/1/2/3 (crash, abort, 69, 70, killed by a signal) ........... WRONG
#   - no JSON summary as the last stdout line, or summary.command is another ...... WRONG
#   - the exit status is not the one DESIGN §1 gives for the summary's verdict .... WRONG
#     (open/clean/inferred/measured/accepted/killed/re-acked/observed 0;
#      closed/differs/no-retransmission/no-time-wait/reset/refused/ignored 1;
#      filtered/incomplete/no-answer/inconsistent/no-client 2; unreachable 3)
# then, per case (GT = the server-namespace sysctl read back after lab setup):
#
# | case                        | RIGHT (all of)                              | INCONCLUSIVE                              | WRONG: anything else, e.g.             |
# |-----------------------------|---------------------------------------------|-------------------------------------------|----------------------------------------|
# | handshake :80 (open)        | verdict open                                | filtered AND probes[0].syns_sent says how | closed, unreachable, filtered without  |
# |                             |                                             | many SYNs went unanswered                 | a SYN count                            |
# | handshake :81 (closed)      | verdict closed                              | same                                      | open, unreachable                      |
# | handshake :82 (filtered)    | verdict filtered                            | -                                         | open, closed, unreachable              |
# | teardown active :8001       | verdict clean, pattern 4-way                | incomplete; filtered (handshake got no    | 3-way (8001 ACKs our FIN, closes 0.5 s |
# |   --request 'x\n'           |                                             | answer)                                   | later), differs, closed                |
# | teardown passive :80 (HTTP) | clean, pattern passive                      | same                                      | differs, any other pattern             |
# | teardown simultaneous :80   | clean, pattern simultaneous                 | same                                      | differs (peer did not pass CLOSING)    |
# | teardown abort :8005        | clean, pattern abort, abort_confirmed true  | same                                      | differs, unconfirmed                   |
# | half-close :8003            | clean, bytes_after_our_fin = 5000           | same                                      | another byte count, differs            |
# | retransmit :80 (synack)     | inferred {tcp_synack_retries: GT}           | no inference: verdict measured (schedule  | another inferred value;                |
# |                             |                                             | described), filtered, incomplete,         | no-retransmission (the server does     |
# |                             |                                             | inconclusive                              | retransmit)                            |
# | retransmit :8002 fin        | inferred {tcp_orphan_retries: GT}           | same                                      | same                                   |
# | time-wait reuse :80         | outcome accepted, isn_distance 65537        | no-answer, inconsistent, incomplete,      | refused, no-time-wait, reset, another  |
# |   (--isn higher --ts newer) |                                             | inconclusive; filtered                    | ISN distance                           |
# | time-wait rst :80           | outcome killed (GT tcp_rfc1337 = 0)         | same                                      | ignored, no-time-wait, reset           |
# | time-wait fin :80           | outcome re-acked                            | same                                      | no-time-wait, reset                    |
# | time-wait duration :80      | outcome observed, 59.5 s <= duration <= 63 s| same                                      | no-time-wait, longer-than-max, reset,  |
# |                             | (Linux: 60.0-62.05 s; +/- 0.5 s resolution) |                                           | a duration outside the range           |
# | ping :80 --count 5          | verdict open, rst 0, icmp 0                 | filtered (every probe unanswered)         | closed, unreachable, a RST or ICMP     |
# |                             |                                             |                                           | counted from a port that sends none    |
# | listen (kernel client in    | inferred {tcp_syn_retries: GT}              | measured (no inference), no-client        | another inferred value, observed       |
# |   the server namespace)     |                                             |                                           |                                        |
#
# Figures (RTTs, gaps, state durations) are not judged, except the ones named above.
# Every non-RIGHT run is kept with its raw summary, exit status, stderr tail and the reason.
# ----------------------------------------------------------------------------------------

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
LAB_SH = os.path.join(ROOT, "tests", "lab", "lab.sh")
LAB_NAME, LAB_NET = "tploss", "198.18.9"
CLI_NS, SRV_NS, PATH_NS = f"{LAB_NAME}-cli", f"{LAB_NAME}-srv", f"{LAB_NAME}-path"
CLIENT, SERVER = f"{LAB_NET}.1", f"{LAB_NET}.2"
NFT_TABLE = "tploss"                       # family bridge, path namespace (forward chain)
LOSS_MATCH = "meta l4proto { tcp, icmp }"  # what the loss applies to, each direction

# Server-namespace sysctls, set the way lab.sh sets them (its env vars), then read back.
LAB_SYSCTLS = {"TCP_SYNACK_RETRIES": "2", "TCP_ORPHAN_RETRIES": "2", "TCP_FIN_TIMEOUT": "3",
               "TCP_RFC1337": "0", "TCP_SYNCOOKIES": "1"}
EXTRA_SERVER_SYSCTLS = {"tcp_syn_retries": "2"}   # the listen case's kernel client (≈ 7 s)
GROUND_TRUTH_KEYS = ("tcp_synack_retries", "tcp_orphan_retries", "tcp_fin_timeout", "tcp_rfc1337",
                     "tcp_syncookies", "tcp_syn_retries", "tcp_timestamps")

RUNS = 20                                  # per (command, loss level); --runs lowers it
LEVELS = (0, 10, 30)                       # % random loss in each direction
PARALLEL = 6                               # concurrent short runs
LONG_PARALLEL = 10                         # concurrent time-wait duration runs (≈ 62 s, idle)
LISTEN_PORTS = range(9000, 9032)          # one per concurrent listen run (caps --parallel)
TARGET_RIGHT_AT_10 = 0.99
BENCH_DEADLINE_S = 4 * 3600                # whole bench, belt and braces
HTTP_REQUEST = r"GET / HTTP/1.0\r\n\r\n"   # tcpprobe --request escapes
TW_ISN_OFFSET = 65537                      # Linux: new ISN = TIME-WAIT's SND.NXT + 65537
TW_RANGE_US = (59_500_000, 63_000_000)

EXIT_OF = {"open": 0, "clean": 0, "inferred": 0, "measured": 0, "accepted": 0, "killed": 0, "re-acked": 0,
           "observed": 0, "ignored": 0, "refused": 0,
           "closed": 1, "differs": 1, "no-retransmission": 1, "no-time-wait": 1, "reset": 1,
           "filtered": 2, "incomplete": 2, "no-answer": 2, "inconsistent": 1, "no-client": 2,
           "inconclusive": 2, "pending": 2,
           "longer-than-max": 0, "silent-end": 0,   # time-wait: ran out of time / a closed port that answers nothing
           "unreachable": 3}
# "ignored"/"refused" exit 0 because the probe ran as intended (time_wait_cmd.cpp exit_for);
# whether they are right depends on the case.
COULD_NOT_TELL = {"filtered", "incomplete", "no-answer", "inconsistent", "inconclusive", "no-client", "pending",
                  "silent-end"}

STOP = threading.Event()                   # Ctrl-C / SIGTERM: start nothing new
LIVE = set()                               # Popen objects of running tcpprobe / client runs
LIVE_LOCK = threading.Lock()


def log(msg):
    print(f"[loss {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout, check=False, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kw)


def in_cli(cmd):
    return ["ip", "netns", "exec", CLI_NS] + list(cmd)


def in_srv(cmd):
    return ["ip", "netns", "exec", SRV_NS] + list(cmd)


def in_path(cmd):
    return ["ip", "netns", "exec", PATH_NS] + list(cmd)


def lab_env():
    return dict(os.environ, TP_LAB=LAB_NAME, TP_LAB_NET=LAB_NET, **LAB_SYSCTLS)


# ----------------------------------------------------------------------------------------
# classification helpers


def verdict_line(s):
    return s.get("verdict")


def first(lst):
    return lst[0] if isinstance(lst, list) and lst and isinstance(lst[0], dict) else {}


def could_not_tell(v, extra=""):
    return "inconclusive", f"{v}{extra}"


def judge_handshake(expect):
    def judge(s, gt):
        v = verdict_line(s)
        p0 = first(s.get("probes"))
        if v == expect:
            return "right", v
        if v == "filtered":
            n = p0.get("syns_sent")
            if isinstance(n, int) and n >= 1:
                return could_not_tell(v, f" ({n} SYNs unanswered)")
            return "wrong", "filtered without a count of unanswered SYNs"
        anomalies = "; ".join(str(a) for a in p0.get("anomalies") or [])
        return "wrong", f"{v} (port is {expect})" + (f"; anomalies: {anomalies}" if anomalies else "")
    return judge


def judge_close(pattern, extra=None):
    """teardown / half-close: verdict clean with `pattern`; extra(s) -> None or why not."""
    def judge(s, gt):
        v, pat = verdict_line(s), s.get("pattern")
        findings = "; ".join(str(f) for f in s.get("findings") or [])
        if v == "clean" and pattern is not None and str(pat).endswith("-unconfirmed"):
            # The tool says itself that the pattern is not a fact: it could not tell.
            return "inconclusive", f"clean/{pat}" + (f": {findings}" if findings else "")
        if v == "clean" and (pattern is None or pat == pattern):
            why = extra(s) if extra else None
            if why is None:
                return "right", f"clean/{pat}"
            return "wrong", why
        if v in COULD_NOT_TELL:
            return could_not_tell(v, f"/{pat}" + (f": {findings}" if findings else ""))
        return "wrong", f"{v}/{pat}" + (f": {findings}" if findings else "")
    return judge


def abort_confirmed(s):
    return None if s.get("abort_confirmed") is True else f"clean/abort but abort_confirmed={s.get('abort_confirmed')!r}"


def bytes_after_fin(s):
    n = s.get("bytes_after_our_fin")
    return None if n == 5000 else f"clean but bytes_after_our_fin={n!r} (server sends 5000)"


def judge_inference(sysctl, gt_key):
    def judge(s, gt):
        v, inf = verdict_line(s), s.get("inferred")
        want = {"sysctl": sysctl, "value": int(gt[gt_key])}
        r0 = first(s.get("runs") or s.get("clients"))
        sched = r0.get("times_us")
        copies = f", from {r0.get('transmissions')} copies seen" if r0.get("transmissions") is not None else ""
        # retransmit --segment fin: runs at a longer RTO that settled a choice the first runs left
        follow = sum(1 for x in (s.get("runs") or []) if isinstance(x, dict) and x.get("follow_up"))
        copies += f", {follow} follow-up run(s)" if follow else ""
        if isinstance(inf, dict):
            if inf == want:
                return "right", f"inferred {inf.get('value')}" + (f" ({follow} follow-up runs)" if follow else "")
            return "wrong", f"inferred {inf.get('sysctl')}={inf.get('value')} (server: {want['value']}){copies}"
        if inf is not None:
            return "wrong", f"inferred is not an object: {inf!r}"
        if v == "measured":
            return could_not_tell(v, f" (schedule without inference{copies})")
        if v in COULD_NOT_TELL:
            return could_not_tell(v)
        if v == "no-retransmission":
            return "wrong", f"no-retransmission (the server does retransmit){copies}"
        if v == "inferred":
            return "wrong", "verdict inferred but no inferred object"
        return "wrong", f"{v}" + (f" (times_us {sched})" if sched is not None else "")
    return judge


def judge_time_wait(outcome, extra=None):
    def judge(s, gt):
        t0 = first(s.get("tests"))
        out = t0.get("outcome", verdict_line(s))
        if out == outcome:
            why = extra(t0) if extra else None
            return ("right", out) if why is None else ("wrong", why)
        how = f"peer_closed_first={t0.get('peer_closed_first')}, answer={t0.get('answer')}"
        if out in COULD_NOT_TELL or verdict_line(s) in COULD_NOT_TELL:
            return could_not_tell(out or verdict_line(s), f" ({how})" if t0 else "")
        return "wrong", f"{out} (expected {outcome}; {how})"
    return judge


def isn_distance(t):
    d = t.get("isn_distance")
    return None if d == TW_ISN_OFFSET else f"accepted but isn_distance={d!r} (Linux: {TW_ISN_OFFSET})"


def tw_duration(t):
    # The answer is the bracket the tool prints ("58.76 s +/- 3.88 s, between 54.88 and
    # 62.64 s"); its midpoint is a summary. Right when the bracket holds the truth.
    d, lo, hi = t.get("duration_us"), t.get("lower_us"), t.get("upper_us")
    num = lambda x: isinstance(x, (int, float))
    if num(lo) and num(hi) and lo <= TW_RANGE_US[1] and hi >= TW_RANGE_US[0]:
        return None
    if not (num(lo) and num(hi)) and num(d) and TW_RANGE_US[0] <= d <= TW_RANGE_US[1]:
        return None
    if num(lo) and num(hi):
        return f"observed but bracket {lo / 1e6:.2f}..{hi / 1e6:.2f} s"
    return f"observed but duration {d / 1e6:.2f} s" if num(d) else f"observed, duration_us {d!r}"


def judge_ping(s, gt):
    v = verdict_line(s)
    d = first(s.get("destinations")) or s
    if v == "open":
        bad = {k: d.get(k) for k in ("rst", "icmp") if d.get(k)}
        return ("right", "open") if not bad else ("wrong", f"open but counted {bad} from a port that sends none")
    if v == "filtered":
        return could_not_tell(v, f" ({d.get('silence')} of {d.get('sent')} probes unanswered)")
    return "wrong", f"{v} (port is open)"


# ----------------------------------------------------------------------------------------
# the cases


class Case:
    def __init__(self, name, command, args, judge, timeout, est_s, sport=None, long=False, listen=False):
        self.name, self.command, self.args, self.judge = name, command, args, judge
        self.timeout, self.est_s, self.sport, self.long, self.listen = timeout, est_s, sport, long, listen


def tgt(port):
    return f"{SERVER}:{port}"


def sport_probe(s):
    return first(s.get("probes")).get("sport")


def sport_connect(s):
    return (s.get("connect") or {}).get("sport")


def sport_run(s):
    return first(s.get("runs")).get("sport")


def sport_test(s):
    return (first(s.get("tests")).get("connect") or {}).get("sport")


CASES = [
    Case("handshake :80 (open)", "handshake", ["handshake", tgt(80)], judge_handshake("open"), 20, 0.2, sport_probe),
    Case("handshake :81 (closed)", "handshake", ["handshake", tgt(81)], judge_handshake("closed"), 20, 0.2, sport_probe),
    Case("handshake :82 (filtered)", "handshake", ["handshake", tgt(82)], judge_handshake("filtered"), 20, 3.1,
         sport_probe),
    Case("teardown --mode active :8001", "teardown", ["teardown", tgt(8001), "--mode", "active", "--request", r"x\n"],
         judge_close("4-way"), 60, 2.8, sport_connect),
    Case("teardown --mode passive :80", "teardown", ["teardown", tgt(80), "--mode", "passive", "--request",
                                                     HTTP_REQUEST], judge_close("passive"), 60, 0.4, sport_connect),
    Case("teardown --mode simultaneous :80", "teardown", ["teardown", tgt(80), "--mode", "simultaneous", "--request",
                                                          HTTP_REQUEST], judge_close("simultaneous"), 60, 2.1,
         sport_connect),
    Case("teardown --mode abort :8005", "teardown", ["teardown", tgt(8005), "--mode", "abort"],
         judge_close("abort", abort_confirmed), 60, 0.6, sport_connect),
    Case("half-close :8003", "half-close", ["half-close", tgt(8003), "--request", r"hi\n"],
         judge_close(None, bytes_after_fin), 60, 2.1, sport_connect),
    Case("retransmit :80 (synack)", "retransmit", ["retransmit", tgt(80)],
         judge_inference("tcp_synack_retries", "tcp_synack_retries"), 110, 8, sport_run),
    Case("retransmit :8002 --segment fin", "retransmit", ["retransmit", tgt(8002), "--segment", "fin"],
         judge_inference("tcp_orphan_retries", "tcp_orphan_retries"), 110, 4, sport_run),
    Case("time-wait :80 --test reuse", "time-wait", ["time-wait", tgt(80), "--test", "reuse"],
         judge_time_wait("accepted", isn_distance), 60, 1.5, sport_test),
    Case("time-wait :80 --test rst", "time-wait", ["time-wait", tgt(80), "--test", "rst"],
         judge_time_wait("killed"), 60, 1.5, sport_test),
    Case("time-wait :80 --test fin", "time-wait", ["time-wait", tgt(80), "--test", "fin"],
         judge_time_wait("re-acked"), 60, 1.5, sport_test),
    Case("time-wait :80 --test duration", "time-wait", ["time-wait", tgt(80), "--test", "duration"],
         judge_time_wait("observed", tw_duration), 220, 63, sport_test, long=True),
    Case("ping :80 --count 5", "ping", ["ping", tgt(80), "--count", "5"], judge_ping, 40, 4.1),
    Case("listen (client: server ns)", "listen", [], judge_inference("tcp_syn_retries", "tcp_syn_retries"), 60, 8,
         listen=True),
]
# Note on teardown active :8001: the port ACKs our FIN (delayed ACK, ≈ 40 ms) and sends its
# own FIN 0.5 s later, so the truth is a 4-way close; "3-way" there is a false statement.
# The half-close row does not judge the pattern: 8003's ACK of our FIN rides on its data,
# so "3-way"/"4-way" there says little about the server; the byte count is the fact.


# ----------------------------------------------------------------------------------------
# running one case


def summary_of(stdout):
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                return None
            return obj if isinstance(obj, dict) and obj.get("type") == "summary" else None
    return None


def start(argv):
    if STOP.is_set():
        raise InterruptedError("stopping")
    # `ip netns exec` execs in place: the PID is the tool's own.
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with LIVE_LOCK:
        LIVE.add(p)
    return p


def interrupt_live():
    """SIGINT to every run this script started and that still runs (by PID), SIGKILL 5 s
    later for any that ignored it."""
    with LIVE_LOCK:
        live = list(LIVE)
    for p in live:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in live:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def finish(p, timeout):
    """(stdout, stderr, timed_out). On timeout: SIGINT (tcpprobe then prints its summary),
    5 s later SIGKILL, both to this PID only."""
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=10)
    finally:
        with LIVE_LOCK:
            LIVE.discard(p)
    return out or "", err or "", timed_out


LISTEN_CLIENT = r"""
import json, socket, sys, time
s = socket.socket()
s.settimeout(40)
t0 = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    out = {"connected": True}
except OSError as e:
    out = {"connected": False, "errno": e.errno}
out["elapsed"] = round(time.monotonic() - t0, 3)
out["sport"] = s.getsockname()[1]
s.close()
print(json.dumps(out), flush=True)
"""

LISTEN_PORT_POOL = []
LISTEN_POOL_LOCK = threading.Lock()


SERVER_DROP_COUNTERS = ("TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop",
                        "TcpExtTCPBacklogDrop", "TcpExtTCPMinTTLDrop")


def server_drop_counters():
    """The server stack's own drops (a full accept queue drops SYNs silently, which a
    client cannot tell from a filter): absolute values of the server namespace's counters."""
    r = run(in_srv(["nstat", "-az", "--json"] + list(SERVER_DROP_COUNTERS)), timeout=10)
    try:
        kernel = json.loads(r.stdout).get("kernel", {})
    except ValueError:
        return {}
    return {k: int(kernel.get(k, 0)) for k in SERVER_DROP_COUNTERS}


def guard_up(pid, port):
    """The RST guard of the tcpprobe run `pid` is in place in the client namespace: its
    watched port listens (the socket guard, the default) or its nft table exists
    (--rst-guard nft). It is set up after the capture, so the run is ready then."""
    ss = run(in_cli(["ss", "-tlnpH", f"sport = :{port}"]), timeout=10).stdout
    if f"pid={pid}," in ss:
        return True
    return f"tcpprobe_{pid}" in run(in_cli(["nft", "list", "tables"]), timeout=10).stdout


def run_listen(binary, case):
    """tcpprobe listen CLIENT:PORT, then a kernel client in the server namespace connects
    to it (its SYNs go unanswered: tcpprobe's RST guard drops them before the client
    namespace's stack answers) until tcp_syn_retries gives up."""
    with LISTEN_POOL_LOCK:
        port = LISTEN_PORT_POOL.pop()
    try:
        argv = in_cli([binary, "-o", "json", "listen", f"{CLIENT}:{port}", "--max-wait", "30s"])
        p = start(argv)
        client = None
        try:
            ready = False
            for _ in range(100):                       # <= 10 s for its guard (it is ready then)
                if p.poll() is not None or STOP.is_set():
                    break
                if guard_up(p.pid, port):
                    ready = True
                    break
                time.sleep(0.1)
            if ready:
                c = start(in_srv(["timeout", "50", sys.executable, "-c", LISTEN_CLIENT, CLIENT, str(port)]))
                cout, cerr, _ = finish(c, 55)
                try:
                    client = json.loads(cout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    client = {"error": (cout + cerr)[-300:]}
        finally:
            out, err, timed_out = finish(p, case.timeout)
        return p.returncode, out, err, timed_out, {"listen_port": port, "client": client, "ready": ready}
    finally:
        with LISTEN_POOL_LOCK:
            LISTEN_PORT_POOL.append(port)


def classify(case, rc, out, err, timed_out, gt):
    """-> (class, reason, summary)"""
    s = summary_of(out)
    if timed_out:
        return "wrong", f"timed out after {case.timeout} s", s
    if rc not in (0, 1, 2, 3):
        tail = err.strip().splitlines()[-1:] if err.strip() else []
        return "wrong", f"exit {rc}" + (f": {tail[0][:160]}" if tail else ""), s
    if s is None:
        return "wrong", "no JSON summary on the last stdout line", s
    if s.get("command") != case.command:
        return "wrong", f"summary.command {s.get('command')!r}", s
    v = s.get("verdict")
    if v not in EXIT_OF:
        return "wrong", f"unknown verdict {v!r} (exit {rc})", s
    if EXIT_OF[v] != rc:
        return "wrong", f"exit {rc} contradicts verdict {v} (DESIGN §1: {EXIT_OF[v]})", s
    cls, reason = case.judge(s, gt)
    return cls, reason, s


KEEP_OUTPUT = None  # --keep-output DIR


def keep_output(case, level, index, cls, out, err):
    """Saves what a run that was not right printed (--keep-output)."""
    if not KEEP_OUTPUT or cls == "right":
        return
    name = "".join(c if c.isalnum() else "_" for c in case.name)
    with open(os.path.join(KEEP_OUTPUT, f"{name}-{level}pct-{index}-{cls}.out"), "w") as f:
        f.write(out or "")
        f.write("\n--- stderr ---\n")
        f.write(err or "")


def run_one(binary, case, level, index, gt):
    if STOP.is_set():
        return None
    t0 = time.monotonic()
    extra = {}
    try:
        if case.listen:
            rc, out, err, timed_out, extra = run_listen(binary, case)
        else:
            p = start(in_cli([binary, "-o", "json"] + case.args))
            out, err, timed_out = finish(p, case.timeout)
            rc = p.returncode
    except InterruptedError:
        return None
    t1 = time.monotonic()
    cls, reason, s = classify(case, rc, out, err, timed_out, gt)
    keep_output(case, level, index, cls, out, err)
    rec = {"case": case.name, "loss_pct": level, "run": index, "class": cls, "reason": reason, "exit": rc,
           "wall_s": round(t1 - t0, 3), "t_start": round(t0, 3), "t_end": round(t1, 3)}
    if s is not None and case.sport:
        try:
            rec["sport"] = case.sport(s)
        except (AttributeError, TypeError):
            rec["sport"] = None
        rec["dport"] = int(case.args[1].rsplit(":", 1)[1])
    if extra:
        rec.update(extra)
    if cls != "right":
        rec["summary"] = s
        rec["stderr_tail"] = err.strip().splitlines()[-5:]
        if s is None:
            rec["stdout_tail"] = out.strip().splitlines()[-3:]
    return rec


# ----------------------------------------------------------------------------------------
# lab and loss


def lab_up():
    log(f"lab up ({LAB_NAME}, {LAB_NET}.0/24)")
    run([LAB_SH, "up"], timeout=120, check=True, env=lab_env())
    for k, v in EXTRA_SERVER_SYSCTLS.items():
        run(in_srv(["sysctl", "-q", "-w", f"net.ipv4.{k}={v}"]), timeout=10, check=True)
    if not os.path.exists(f"/run/netns/{PATH_NS}"):
        raise RuntimeError(f"lab.sh up made no path namespace {PATH_NS}: loss is injected there")
    # A kernel-socket fetch across the path: the lab works before anything is measured.
    probe = ("import socket,sys; s=socket.create_connection((sys.argv[1],80),timeout=5); "
             "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(len(s.recv(4096)))")
    r = run(in_cli(["timeout", "10", sys.executable, "-c", probe, SERVER]), timeout=15)
    if r.returncode != 0:
        raise RuntimeError(f"lab check failed (HTTP fetch across {PATH_NS}): {r.stderr.strip()[-300:]}")
    gt = {}
    for k in GROUND_TRUTH_KEYS:
        gt[k] = run(in_srv(["sysctl", "-n", f"net.ipv4.{k}"]), timeout=10, check=True).stdout.strip()
    return gt


def lab_down():
    log("lab down")
    try:
        subprocess.run([LAB_SH, "down"], env=lab_env(), stdout=subprocess.DEVNULL, timeout=120)
    except subprocess.TimeoutExpired:
        log("lab.sh down timed out")


def set_loss(pct):
    """(Re)load `table bridge tploss` in the path namespace: PCT % random loss each way.
    The counters start at 0 with every load."""
    c2s, s2c = f"ip saddr {CLIENT} ip daddr {SERVER}", f"ip saddr {SERVER} ip daddr {CLIENT}"
    rnd = "" if int(pct) >= 100 else f" numgen random mod 100 < {int(pct)}"   # nft refuses "< 100"
    ruleset = f"""add table bridge {NFT_TABLE}
delete table bridge {NFT_TABLE}
table bridge {NFT_TABLE} {{
    counter c2s_seen {{}}
    counter c2s_dropped {{}}
    counter s2c_seen {{}}
    counter s2c_dropped {{}}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        {c2s} {LOSS_MATCH} counter name c2s_seen
        {c2s} {LOSS_MATCH}{rnd} counter name c2s_dropped drop
        {s2c} {LOSS_MATCH} counter name s2c_seen
        {s2c} {LOSS_MATCH}{rnd} counter name s2c_dropped drop
    }}
}}
"""
    run(in_path(["nft", "-f", "-"]), timeout=10, check=True, input=ruleset)


def loss_counters():
    out = run(in_path(["nft", "-j", "list", "counters", "table", "bridge", NFT_TABLE]), timeout=10, check=True).stdout
    c = {x["counter"]["name"]: x["counter"]["packets"] for x in json.loads(out)["nftables"] if "counter" in x}
    res = {}
    for d in ("c2s", "s2c"):
        seen, dropped = c.get(f"{d}_seen", 0), c.get(f"{d}_dropped", 0)
        res[d] = {"frames": seen, "dropped": dropped, "pct": round(100 * dropped / seen, 2) if seen else None}
    return res


# ----------------------------------------------------------------------------------------
# one level


def run_level(binary, cases, level, runs, gt, parallel, deadline):
    set_loss(level)
    log(f"loss {level} % each way: {len(cases)} commands x {runs} runs "
        f"({parallel} at once, {LONG_PARALLEL} for the long ones)")
    jobs_long = [(c, i) for i in range(runs) for c in cases if c.long]
    jobs_short = [(c, i) for i in range(runs) for c in cases if not c.long]
    jobs_short.sort(key=lambda j: -j[0].est_s)       # longest first: shorter makespan
    records = []
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=LONG_PARALLEL) as lp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as sp:
        futs = [lp.submit(run_one, binary, c, level, i, gt) for c, i in jobs_long]
        futs += [sp.submit(run_one, binary, c, level, i, gt) for c, i in jobs_short]
        pending = set(futs)
        done_n, last_note = 0, time.monotonic()
        try:
            while pending:
                if time.monotonic() > deadline:
                    raise RuntimeError("bench deadline reached")
                done, pending = concurrent.futures.wait(pending, timeout=1.0)
                for f in done:
                    rec = f.result()
                    if rec is not None:
                        records.append(rec)
                    done_n += 1
                if time.monotonic() - last_note > 30:
                    last_note = time.monotonic()
                    log(f"  {done_n}/{len(futs)} runs done")
        except BaseException:
            # Ctrl-C, SIGTERM, a failed worker: nothing new starts, the running ones get
            # SIGINT now (not after the pools have waited for them), queued ones return None.
            STOP.set()
            interrupt_live()
            for f in pending:
                f.cancel()
            raise
    counters = loss_counters()
    log(f"loss {level} %: done in {time.monotonic() - t0:.0f} s; measured drop client->server "
        f"{counters['c2s']['pct']} % of {counters['c2s']['frames']}, server->client {counters['s2c']['pct']} % "
        f"of {counters['s2c']['frames']} frames")
    return records, counters, round(time.monotonic() - t0, 1)


# ----------------------------------------------------------------------------------------
# report


def tally(records, cases, levels):
    t = {c.name: {lv: Counter() for lv in levels} for c in cases}
    for r in records:
        t[r["case"]][r["loss_pct"]][r["class"]] += 1
    return t


def flag_port_reuse(records):
    """Mark non-right runs whose (dport, sport) an earlier run used less than 65 s before
    (the server may still hold that 4-tuple in TIME-WAIT): not tcpprobe's doing."""
    used = {}
    for r in sorted(records, key=lambda x: x["t_start"]):
        key = (r.get("dport"), r.get("sport"))
        if r.get("sport") is None:
            continue
        prev = used.get(key)
        if r["class"] != "right" and prev is not None and r["t_start"] - prev < 65:
            r["sport_reused_within_65s"] = True
        used[key] = r["t_end"]


def targets(t, cases, levels):
    out = []
    if 10 in levels:
        miss = []
        for c in cases:
            n = sum(t[c.name][10].values())
            right = t[c.name][10]["right"]
            if n and right / n < TARGET_RIGHT_AT_10:
                miss.append(f"{c.name} {100 * right / n:.0f} %")
        total = sum(t[c.name][10]["right"] for c in cases), sum(sum(t[c.name][10].values()) for c in cases)
        out.append({"target": "≥ 99 % right verdicts at 10 % loss, every command",
                    "verdict": "met" if not miss else f"missed by {len(miss)} of {len(cases)} commands",
                    "measured": f"{total[0]}/{total[1]} right overall" + (f"; below 99 %: {', '.join(miss)}" if miss else "")})
    if 30 in levels:
        wrong = [(c.name, t[c.name][30]["wrong"]) for c in cases if t[c.name][30]["wrong"]]
        out.append({"target": "0 wrong verdicts at 30 % loss",
                    "verdict": "met" if not wrong else f"missed: {sum(w for _, w in wrong)} wrong",
                    "measured": "; ".join(f"{n} {w}" for n, w in wrong) or "0 wrong"})
    return out


def reasons(records, cases):
    """Most common reasons per case and class, over all levels: [(reason, count, levels)]."""
    out = {}
    for c in cases:
        for cls in ("wrong", "inconclusive"):
            rs = [r for r in records if r["case"] == c.name and r["class"] == cls]
            if not rs:
                continue
            cnt = Counter(r["reason"] for r in rs)
            out.setdefault(c.name, {})[cls] = [
                {"reason": reason, "count": n,
                 "at_loss_pct": sorted({r["loss_pct"] for r in rs if r["reason"] == reason})}
                for reason, n in cnt.most_common(5)]
    return out


def cell(cn):
    return f"{cn['right']} / {cn['inconclusive']} / {cn['wrong']}"


def markdown(t, cases, levels, tg, meta, top):
    head = "| command | " + " | ".join(f"{lv} % loss: right / inconcl. / wrong" for lv in levels) + " |"
    lines = [head, "|---|" + "---|" * len(levels)]
    for c in cases:
        lines.append(f"| `{c.name}` | " + " | ".join(cell(t[c.name][lv]) for lv in levels) + " |")
    tot = {lv: Counter() for lv in levels}
    for c in cases:
        for lv in levels:
            tot[lv].update(t[c.name][lv])
    lines.append("| **all** | " + " | ".join(f"**{cell(tot[lv])}**" for lv in levels) + " |")
    lines += ["", "| DESIGN §6 loss target | verdict | measured |", "|---|---|---|"]
    lines += [f"| {x['target']} | {x['verdict']} | {x['measured']} |" for x in tg]
    meas = "; ".join(f"{lv} %: client→server {m['c2s']['pct']} %, server→client {m['s2c']['pct']} %"
                     for lv, m in meta["measured_drop"].items())
    lines += ["", f"Wall time {meta['wall_s'] / 60:.1f} min ({meta['runs_per_cell']} runs per cell, "
                  f"{meta['parallel']} at once + {LONG_PARALLEL} for `time-wait --test duration`). "
                  f"Drop rate measured by the nft counters: {meas}."]
    if top:
        lines += ["", "| command | most common WRONG reasons | most common INCONCLUSIVE reasons |", "|---|---|---|"]
        for c in cases:
            if c.name not in top:
                continue
            fmt = lambda cls: "; ".join(f"{x['reason']} ×{x['count']} (at {'/'.join(map(str, x['at_loss_pct']))} %)"
                                        for x in top[c.name].get(cls, [])[:3]) or "–"
            lines.append(f"| `{c.name}` | {fmt('wrong')} | {fmt('inconclusive')} |")
    return "\n".join(lines)


def headline(m):
    g = m["git"]
    return (f"tcpprobe loss bench {m['date']}, Linux {m['kernel']}, {m['tcpprobe']}; working tree at git "
            f"{(g['head'] or '?')[:12]}{' with uncommitted changes in src/include' if g['source_tree_dirty'] else ''}"
            f"{'; ' + m['label'] if m['label'] else ''}")


def git_state():
    def g(*a):
        try:
            return run(["git", "-C", ROOT] + list(a), timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    dirty = g("status", "--porcelain", "--", "src", "include", "CMakeLists.txt")
    return {"head": g("rev-parse", "HEAD"), "source_tree_dirty": bool(dirty)}


def tool_version(binary):
    try:
        return run([binary, "--version"], timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------------------


def bench(binary, runs=RUNS, levels=LEVELS, parallel=PARALLEL, case_filter=None, json_path=None, label=None):
    """Runs the whole loss bench (lab up ... lab down); returns the results dict."""
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"no tcpprobe binary at {binary}")
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool}")
    cases = [c for c in CASES if not case_filter or any(f in c.name for f in case_filter)]
    if not cases:
        raise SystemExit(f"no case matches {case_filter}")
    STOP.clear()
    LISTEN_PORT_POOL[:] = list(LISTEN_PORTS)
    started = time.monotonic()
    deadline = started + BENCH_DEADLINE_S
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel": platform.release(), "cpus": os.cpu_count(),
            "binary": binary, "tcpprobe": tool_version(binary), "git": git_state(), "label": label,
            "lab": f"{CLIENT} ({CLI_NS}) <-> bridge br0 ({PATH_NS}) <-> {SERVER} ({SRV_NS})",
            "loss_injector": f"nft table bridge {NFT_TABLE} in {PATH_NS}, forward chain: "
                             f"ip saddr/daddr (each direction) {LOSS_MATCH} "
                             "numgen random mod 100 < LOSS drop",
            "runs_per_cell": runs, "levels_pct": list(levels), "parallel": parallel, "long_parallel": LONG_PARALLEL,
            "measured_drop": {}, "level_wall_s": {}}
    records = []
    try:
        gt = lab_up()
        meta["ground_truth_server_sysctls"] = gt
        log("ground truth (server namespace): " + ", ".join(f"{k}={v}" for k, v in gt.items()))
        for lv in levels:
            before = server_drop_counters()
            recs, counters, wall = run_level(binary, cases, lv, runs, gt, parallel, deadline)
            after = server_drop_counters()
            records += recs
            meta["measured_drop"][lv] = counters
            meta["level_wall_s"][lv] = wall
            meta.setdefault("server_drops", {})[lv] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            log(f"loss {lv} %: the server stack's own drops: " +
                ", ".join(f"{k} {v}" for k, v in meta["server_drops"][lv].items()))
    finally:
        STOP.set()
        interrupt_live()
        lab_down()
    meta["wall_s"] = round(time.monotonic() - started, 1)
    flag_port_reuse(records)
    t = tally(records, cases, levels)
    tg = targets(t, cases, levels)
    top = reasons(records, cases)
    res = {"meta": meta,
           "table": {c.name: {str(lv): dict(t[c.name][lv]) for lv in levels} for c in cases},
           "targets": tg, "reasons": top}
    res["table_markdown"] = markdown(t, cases, levels, tg, meta, top)
    res["runs"] = sorted(records, key=lambda r: (r["loss_pct"], r["case"], r["run"]))
    if json_path:
        write_json(res, json_path)
        log(f"wrote {json_path}")
    return res


def write_json(res, path):
    """Indented, except one line per run (the raw summaries make the file large)."""
    head = {k: v for k, v in res.items() if k != "runs"}
    text = json.dumps(head, indent=1, ensure_ascii=False)
    runs = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in res["runs"])
    text = text[:-2] + ',\n "runs": [\n' + runs + "\n ]\n}\n"
    json.loads(text)                                   # still one valid document
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "bench", "tcpprobe"),
                    help="tcpprobe binary (default build/bench/tcpprobe, as bench/run builds it)")
    ap.add_argument("--runs", type=int, default=RUNS, help=f"runs per command and loss level (default {RUNS})")
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)), help="loss levels in %%, comma-separated")
    ap.add_argument("--parallel", type=int, default=PARALLEL, help=f"concurrent short runs (default {PARALLEL})")
    ap.add_argument("--cases", action="append", help="only the commands whose row name contains TEXT (repeatable)")
    ap.add_argument("--json", default=os.path.join(BENCH, "loss-results.json"), help="where to write the results")
    ap.add_argument("--label", help="free text stored in the results (e.g. which build)")
    ap.add_argument("--keep-output", metavar="DIR",
                    help="write the stdout and stderr of every run that was not right to DIR (to read why)")
    args = ap.parse_args()
    global KEEP_OUTPUT
    KEEP_OUTPUT = args.keep_output
    if KEEP_OUTPUT:
        os.makedirs(KEEP_OUTPUT, exist_ok=True)
    if os.geteuid() != 0:
        print("bench/loss.py needs root (network namespaces, raw sockets, nft)", file=sys.stderr)
        return 77
    if not 1 <= args.runs <= 1000 or not 1 <= args.parallel <= len(LISTEN_PORTS):
        ap.error(f"--runs 1..1000, --parallel 1..{len(LISTEN_PORTS)}")
    levels = tuple(int(x) for x in args.levels.split(","))
    if any(not 0 <= x <= 100 for x in levels):
        ap.error("--levels: percentages 0..100")

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        res = bench(args.binary, args.runs, levels, args.parallel, args.cases, args.json, args.label)
    except KeyboardInterrupt:
        log("interrupted: runs stopped, lab taken down, no results written")
        return 130
    m = res["meta"]
    print(headline(m) + "\n")
    print(res["table_markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
