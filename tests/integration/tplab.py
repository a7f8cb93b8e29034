"""Shared helpers for tcpprobe's privileged integration tests (python3 stdlib only).

The tests run the real tcpprobe binary in the client namespace of the lab
(tests/lab/lab.sh) against the real Linux TCP stack in the server namespace.
Every packet stays inside the two lab namespaces: the only addresses used are
the lab's own (TP_LAB_NET.1 / .2) and loopback inside the client namespace.

Every wait in here is bounded; every child process is started by us and is
stopped (by its own PID) before the helper returns.  lab.sh down additionally
kills anything still running in the lab namespaces.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
SKIP_MESSAGE = "skipped: needs root and network namespaces"

LAB = os.environ.get("TP_LAB", "tpit")
NET = os.environ.get("TP_LAB_NET", "198.18.7")
CLI_NS = LAB + "-cli"
SRV_NS = LAB + "-srv"
CLI_IF = LAB + "c0"
SRV_IF = LAB + "s0"
CLI_IP = NET + ".1"
SRV_IP = NET + ".2"
PORT_OPEN = 80
PORT_CLOSED = 81
PORT_DROP = 82
PORT_REJECT = 83

# Tools the tests use besides tcpprobe itself.
TOOLS = ("ip", "nft", "ss", "tcpdump", "tshark", "setpriv", "timeout", "unshare")


# --------------------------------------------------------------------------
# privilege / environment

def netns_available():
    """True when we may create network namespaces (root with CAP_SYS_ADMIN)."""
    if not os.path.exists("/proc/self/ns/net") or shutil.which("unshare") is None:
        return False
    try:
        r = subprocess.run(["unshare", "--net", "true"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def privileged():
    return os.geteuid() == 0 and shutil.which("ip") is not None and netns_available()


def skip(message=SKIP_MESSAGE):
    print(message, flush=True)
    sys.exit(SKIP)


def require_environment():
    """Exit 77 (CTest skip) unless root with netns and the tools we need."""
    if not privileged():
        skip()
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        skip("skipped: needs %s (not found in PATH)" % ", ".join(missing))
    if not (os.path.exists("/run/netns/" + CLI_NS) and os.path.exists("/run/netns/" + SRV_NS)):
        raise SystemExit("FAIL: lab %r is not up (the lab_up fixture should have created "
                         "/run/netns/%s and /run/netns/%s)" % (LAB, CLI_NS, SRV_NS))


# --------------------------------------------------------------------------
# checks: collect every failed expectation, report them together

class TestFailure(Exception):
    pass


class Checker:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.context = []      # strings appended to the report on failure

    def check(self, cond, message):
        if not cond:
            self.failures.append(message)
            print("  check failed: " + message, flush=True)
        return bool(cond)

    def require(self, cond, message):
        """Like check, but stop the test: later checks make no sense."""
        if not self.check(cond, message):
            raise TestFailure(message)

    def eq(self, actual, expected, what):
        return self.check(actual == expected, "%s: expected %r, got %r" % (what, expected, actual))

    def note(self, text):
        self.context.append(text)


# --------------------------------------------------------------------------
# processes

def ns_cmd(ns, argv):
    return ["ip", "netns", "exec", ns] + list(argv)


def run(argv, timeout=30, check=False, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise TestFailure("command %s failed with %d:\n%s%s" % (" ".join(argv), r.returncode,
                                                               r.stdout, r.stderr))
    return r


def in_cli(argv, **kw):
    return run(ns_cmd(CLI_NS, argv), **kw)


def in_srv(argv, **kw):
    return run(ns_cmd(SRV_NS, argv), **kw)


class ProbeResult:
    def __init__(self, argv, returncode, stdout, stderr, elapsed):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed
        self._lines = None
        self.parse_error = None

    def describe(self):
        return ("\n    command: %s\n    exit: %s  wall: %.3f s\n    --- stdout ---\n%s\n    --- stderr ---\n%s"
                % (" ".join(self.argv), self.returncode, self.elapsed,
                   _indent(self.stdout), _indent(self.stderr)))

    def json_lines(self):
        """Every stdout line parsed as JSON (list of objects); parse errors recorded."""
        if self._lines is None:
            self._lines = []
            for n, line in enumerate(self.stdout.splitlines(), 1):
                try:
                    self._lines.append(json.loads(line))
                except ValueError as e:
                    self.parse_error = "stdout line %d is not JSON (%s): %r" % (n, e, line)
                    self._lines.append(None)
        return self._lines

    def summary(self):
        lines = self.json_lines()
        if lines and isinstance(lines[-1], dict) and lines[-1].get("type") == "summary":
            return lines[-1]
        return None

    def events(self, type_=None):
        return [o for o in self.json_lines()[:-1] if isinstance(o, dict)
                and (type_ is None or o.get("type") == type_)]

    def probe(self, i=0):
        s = self.summary() or {}
        probes = s.get("probes") or []
        return probes[i] if len(probes) > i else {}


def _indent(text, prefix="    | "):
    text = text.rstrip("\n")
    if not text:
        return prefix + "(empty)"
    return "\n".join(prefix + l for l in text.splitlines())


class Tcpprobe:
    def __init__(self, binary):
        self.binary = binary

    def argv(self, args, ns=CLI_NS, wrapper=()):
        return ns_cmd(ns, list(wrapper) + [self.binary] + list(args))

    def run(self, args, timeout=30, ns=CLI_NS, wrapper=()):
        argv = self.argv(args, ns, wrapper)
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TestFailure("tcpprobe did not finish within %s s: %s\nstdout so far:\n%s"
                              % (timeout, " ".join(argv), e.stdout))
        return ProbeResult(argv, r.returncode, r.stdout, r.stderr, time.monotonic() - t0)

    def start(self, args, ns=CLI_NS):
        """Background run: returns (Popen, argv). `ip netns exec` execs, so
        Popen.pid becomes tcpprobe's own PID."""
        argv = self.argv(args, ns)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return p, argv

    @staticmethod
    def finish(p, argv, timeout=15):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=5)
            raise TestFailure("tcpprobe still running %s s after the signal: %s\nstdout:\n%s\nstderr:\n%s"
                              % (timeout, " ".join(argv), out, err))
        return ProbeResult(argv, p.returncode, out, err, 0.0)


# --------------------------------------------------------------------------
# packet capture (tcpdump in a lab namespace, read back with tshark)

class Capture:
    """tcpdump -i IFACE in namespace NS writing a pcap, started before and
    stopped after the block (context manager)."""

    def __init__(self, ns, iface, path, bpf="tcp or icmp", max_seconds=60, nano=False, immediate=True):
        self.ns, self.iface, self.path, self.bpf = ns, iface, path, bpf
        self.nano = nano  # nanosecond timestamps (default: tcpdump's microseconds)
        # Immediate mode wakes tcpdump for every packet, inside the sender's transmit path;
        # without it tcpdump reads its ring a block at a time (on a timeout or a full block).
        self.immediate = immediate
        self.max_seconds = max_seconds
        self.proc = None
        self.errpath = path + ".stderr"

    def start(self):
        self._err = open(self.errpath, "w")
        # -Z root: do not drop to the tcpdump user (it could not create the
        # file in our private temp dir). `timeout` bounds its lifetime.
        argv = ns_cmd(self.ns, ["timeout", str(self.max_seconds), "tcpdump", "-i", self.iface,
                                "-n", "-Z", "root", "-U"] + (["--immediate-mode"] if self.immediate else [])
                       + ["-w", self.path]
                       + (["--time-stamp-precision", "nano"] if self.nano else []) + [self.bpf])
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("tcpdump exited early (%s): %s" % (self.proc.returncode, self._stderr()))
            if "listening on" in self._stderr() and os.path.exists(self.path) \
                    and os.path.getsize(self.path) >= 24:
                time.sleep(0.05)
                return self
            time.sleep(0.05)
        self.stop()
        raise TestFailure("tcpdump on %s/%s not ready after 5 s: %s" % (self.ns, self.iface, self._stderr()))

    def _stderr(self):
        try:
            with open(self.errpath) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, settle=None):
        if self.proc is None:
            return
        # Let the last packets reach the file: without immediate mode tcpdump reads its
        # ring when a block times out (libpcap's 1 s read timeout).
        time.sleep(settle if settle is not None else 0.2 if self.immediate else 1.5)
        if self.proc.poll() is None:
            # `ip netns exec` execs `timeout`, which passes SIGINT on to tcpdump.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        self._err.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def packets(self):
        return read_pcap(self.path)


FIELDS = [
    ("time", "frame.time_epoch"),
    ("src", "ip.src"), ("dst", "ip.dst"),
    ("ttl", "ip.ttl"), ("tos", "ip.dsfield"), ("df", "ip.flags.df"),
    ("ip_cksum", "ip.checksum.status"),
    ("proto", "ip.proto"),
    ("sport", "tcp.srcport"), ("dport", "tcp.dstport"),
    ("flags", "tcp.flags"), ("seq", "tcp.seq"), ("ack", "tcp.ack"),
    ("win", "tcp.window_size_value"), ("len", "tcp.len"),
    ("mss", "tcp.options.mss_val"), ("wscale", "tcp.options.wscale.shift"),
    ("kinds", "tcp.option_kind"),
    ("tsval", "tcp.options.timestamp.tsval"),
    ("tcp_cksum", "tcp.checksum.status"),
    ("icmp_type", "icmp.type"), ("icmp_code", "icmp.code"),
]

# tshark's checksum status values (epan/proto.h PROTO_CHECKSUM_E_*).
CKSUM_GOOD = "1"


class Packet(dict):
    __getattr__ = dict.get

    def flag_str(self):
        """tcpdump-like flag letters, e.g. 'S', 'S.', 'R', 'R.'."""
        f = self.flags or 0
        s = "".join(c for bit, c in ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"),
                                      (0x20, "U"), (0x40, "E"), (0x80, "W")) if f & bit)
        return s + ("." if f & 0x10 else "")

    def has(self, letter):
        return letter in self.flag_str()

    def option_kinds(self):
        return [int(k) for k in (self.kinds or "").split(",") if k != ""]

    def __str__(self):
        return "%s:%s > %s:%s %s seq %s ack %s win %s ttl %s tos %s mss %s ws %s kinds %s cksum ip/tcp %s/%s" % (
            self.src, self.sport, self.dst, self.dport, self.flag_str(), self.seq, self.ack,
            self.win, self.ttl, self.tos, self.mss, self.wscale, self.kinds,
            self.ip_cksum, self.tcp_cksum)


def read_pcap(path):
    """Packets of a pcap file as Packet dicts (tshark with checksum validation on,
    absolute sequence numbers)."""
    argv = ["tshark", "-n", "-r", path,
            "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
            "-o", "tcp.relative_sequence_numbers:FALSE",
            "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for _, f in FIELDS:
        argv += ["-e", f]
    r = run(argv, timeout=30)
    if r.returncode != 0:
        raise TestFailure("tshark -r %s failed (%d): %s" % (path, r.returncode, r.stderr))
    pkts = []
    for line in r.stdout.splitlines():
        vals = line.split("\t")
        vals += [""] * (len(FIELDS) - len(vals))
        p = Packet()
        for (key, _), v in zip(FIELDS, vals):
            p[key] = v if v != "" else None
        for key in ("ttl", "sport", "dport", "seq", "ack", "win", "len", "mss", "wscale",
                    "tsval", "icmp_type", "icmp_code", "df", "proto"):
            if p[key] is not None:
                p[key] = int(p[key].split(",")[0])
        for key in ("tos", "flags"):
            if p[key] is not None:
                p[key] = int(p[key].split(",")[0], 16)
        if p["time"] is not None:
            p["time"] = float(p["time"])
        pkts.append(p)
    return pkts


def format_packets(pkts):
    if not pkts:
        return "    (no packets)"
    return "\n".join("    " + str(p) for p in pkts)


# --------------------------------------------------------------------------
# lab state

def ss_sockets(ns, args=("-Htan",)):
    """[(state, local, peer)] from ss in NS."""
    r = run(ns_cmd(ns, ["ss"] + list(args)), timeout=10, check=True)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 5:
            out.append((parts[0], parts[3], parts[4]))
    return out


def server_sockets_for_client_port(sport):
    return [s for s in ss_sockets(SRV_NS) if s[2] == "%s:%d" % (CLI_IP, sport)]


def nft_tables(ns=CLI_NS):
    r = run(ns_cmd(ns, ["nft", "list", "tables"]), timeout=10, check=True)
    return [l.strip() for l in r.stdout.splitlines() if l.strip()]


def tcpprobe_tables(ns=CLI_NS):
    return [t for t in nft_tables(ns) if "tcpprobe_" in t]


def tcpprobe_listeners(ns=CLI_NS):
    """Listening TCP sockets of tcpprobe processes (the socket RST guard), as ss prints them."""
    r = run(ns_cmd(ns, ["ss", "-tlnpH"]), timeout=10, check=True)
    return [l.strip() for l in r.stdout.splitlines() if '"tcpprobe"' in l]


def tcpprobe_guards(ns=CLI_NS):
    """Every RST guard of a tcpprobe run in `ns`: nft tables and listening sockets."""
    return tcpprobe_tables(ns) + tcpprobe_listeners(ns)


def wait_until(pred, timeout, interval=0.05):
    """Poll pred() until truthy or timeout (bounded). Returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def tempdir():
    return tempfile.mkdtemp(prefix="tcpprobe-it-")


# --------------------------------------------------------------------------
# socket tables over time, JSON state spans (used by test_close.py)

def sockets_matching(ns, local_port=None, peer_port=None, peer_ip=None):
    """[(state, local, peer)] from `ss -Htan` in NS, filtered by the server-side
    local port and/or the peer's address and port."""
    out = []
    for st, local, peer in ss_sockets(ns):
        lport = int(local.rsplit(":", 1)[1]) if ":" in local else None
        pip, _, pport = peer.rpartition(":")
        if local_port is not None and lport != local_port:
            continue
        if peer_ip is not None and pip != peer_ip:
            continue
        if peer_port is not None and (not pport.isdigit() or int(pport) != peer_port):
            continue
        out.append((st, local, peer))
    return out


def watch_sockets(ns, proc, local_port, max_seconds, interval=0.02):
    """Sample `ss -tan` in NS every `interval` s while `proc` runs (at most
    max_seconds). Returns [(seconds since start, state, local, peer)] for the
    sockets on local_port. Bounded: stops at max_seconds even if proc runs on."""
    samples = []
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < max_seconds:
        t = time.monotonic() - t0
        for st, local, peer in sockets_matching(ns, local_port=local_port):
            samples.append((t, st, local, peer))
        time.sleep(interval)
    return samples


def state_names(spans):
    """["ESTABLISHED", "FIN-WAIT-1", …] from a summary's local_states/peer_states."""
    return [s.get("state") for s in spans or [] if isinstance(s, dict)]


def state_duration_us(spans, state):
    """duration_us of the first span named `state` (None if absent or open-ended)."""
    for s in spans or []:
        if isinstance(s, dict) and s.get("state") == state:
            return s.get("duration_us")
    return None


# --------------------------------------------------------------------------
# checks every test script uses

def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def within(c, value, lo, hi, what):
    return c.check(is_number(value) and lo <= value <= hi,
                   "%s: %r not within [%s, %s]" % (what, value, lo, hi))


def check_no_table(c, when, wait=1.0):
    """The run's RST guard is gone with the process (within `wait` s): its nft table (flags
    owner) or its listening sockets."""
    left = wait_until(lambda: not tcpprobe_guards(), wait) if wait else not tcpprobe_guards()
    c.check(left, "tcpprobe RST guard left in %s %s: %r" % (CLI_NS, when, tcpprobe_guards()))


def run_json(c, tp, args, timeout=30):
    """tcpprobe -o json ARGS; the result is noted for failure messages, and no table may remain."""
    r = tp.run(["-o", "json"] + list(args), timeout=timeout)
    c.note(r.describe())
    check_no_table(c, "after `tcpprobe %s`" % " ".join(args))
    return r


# --------------------------------------------------------------------------
# a test script's command line (shared by the test_*.py files that use it)

def main(tests, argv=None):
    """`SCRIPT --list` prints "NAME TIMEOUT" lines; `SCRIPT --tcpprobe BIN
    --source-dir DIR NAME` runs test NAME: fn(checker, Tcpprobe, tmpdir).
    tests: {name: (fn, timeout)}. Exit 0 pass, 1 fail, 77 skipped."""
    import argparse
    import traceback
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tcpprobe")
    ap.add_argument("--source-dir")
    ap.add_argument("name", nargs="?")
    a = ap.parse_args(argv)
    if a.list:
        for name, (_, timeout) in tests.items():
            print(name, timeout)
        return 0
    if a.name not in tests or not a.tcpprobe:
        ap.error("need --tcpprobe BIN and a test name, one of: " + ", ".join(tests))
    require_environment()
    if not os.access(a.tcpprobe, os.X_OK):
        print("FAIL: tcpprobe binary %s does not exist or is not executable (build it first)"
              % a.tcpprobe)
        return 1
    fn, _ = tests[a.name]
    c = Checker(a.name)
    tp = Tcpprobe(os.path.abspath(a.tcpprobe))
    tmp = tempdir()
    c.source_dir = a.source_dir
    print("test %s (lab %s: %s %s <-> %s %s)" % (a.name, LAB, CLI_NS, CLI_IP, SRV_NS, SRV_IP),
          flush=True)
    try:
        fn(c, tp, tmp)
    except TestFailure as e:
        if str(e) not in c.failures:
            c.failures.append(str(e))
    except Exception:
        c.failures.append("exception:\n" + traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    if c.failures:
        print("\nFAIL %s: %d failed check(s):" % (a.name, len(c.failures)))
        for f in c.failures:
            print("  - " + f)
        for ctx in c.context:
            print("\ncontext: " + ctx)
        return 1
    print("PASS %s" % a.name)
    return 0


# --------------------------------------------------------------------------
# per-namespace sysctls, set for the duration of a block (used by test_retransmit.py)

def ns_sysctl(ns, key, value=None):
    """Read (value None) or write net.ipv4.KEY in namespace NS."""
    name = key if key.startswith("net.") else "net.ipv4." + key
    if value is None:
        return run(ns_cmd(ns, ["sysctl", "-n", name]), timeout=10, check=True).stdout.strip()
    run(ns_cmd(ns, ["sysctl", "-q", "-w", "%s=%s" % (name, value)]), timeout=10, check=True)
    return str(value)


class Sysctl:
    """`with Sysctl(SRV_NS, "tcp_synack_retries", 1):` sets the value for the
    block and restores the previous one afterwards, also when the block fails."""

    def __init__(self, ns, key, value):
        self.ns, self.key, self.value = ns, key, value
        self.old = None

    def __enter__(self):
        self.old = ns_sysctl(self.ns, self.key)
        ns_sysctl(self.ns, self.key, self.value)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            ns_sysctl(self.ns, self.key, self.old)
        return False


# --------------------------------------------------------------------------
# TIME-WAIT sockets and kernel counters of a namespace (used by test_time_wait.py)

def time_wait_sockets(ns, local_port=None):
    """[(local, peer)] from `ss -Htan state time-wait` in NS (with a state
    filter ss prints no State column), optionally only those on local_port."""
    r = run(ns_cmd(ns, ["ss", "-Htan", "state", "time-wait"]), timeout=10, check=True)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local, peer = parts[2], parts[3]
        if local_port is None or local.rsplit(":", 1)[-1] == str(local_port):
            out.append((local, peer))
    return out


def watch_time_wait(ns, proc, local_port, max_seconds, interval=0.25):
    """Sample `ss -tan state time-wait` in NS every `interval` s while `proc`
    runs (at most max_seconds). Returns [(seconds since start, local, peer)]."""
    samples = []
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < max_seconds:
        t = time.monotonic() - t0
        for local, peer in time_wait_sockets(ns, local_port):
            samples.append((t, local, peer))
        time.sleep(interval)
    return samples


def netstat_counters(ns, section="TcpExt"):
    """{name: value} of one section of /proc/net/netstat in NS (per namespace)."""
    r = run(ns_cmd(ns, ["cat", "/proc/net/netstat"]), timeout=10, check=True)
    rows = [l.split() for l in r.stdout.splitlines() if l.startswith(section + ":")]
    if len(rows) < 2:
        return {}
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:])}


# --------------------------------------------------------------------------
# loss injection with nft (there is no netem here) and the foreign TCP peer
# (tests/lab/foreign_peer.py).  See tests/lab/README.md.
#
# Every loss rule lives in the PATH namespace (LAB-path: the L2 bridge br0
# between the client's and the server's veth pairs, see tests/lab/lab.sh), in
# a table of its own per helper: `table bridge tploss_...` with a forward chain.
# A drop there is a loss on the link, in both directions: the sender's
# transmit succeeded (no local send error, so its timers run as on a lossy
# path), the capture on the sender's veth has the packet, the capture on the
# receiver's veth does not.  Kernel servers and the foreign peer alike.
# (A drop in the server's own output/postrouting hooks would not do: Linux
# sees EPERM and reacts to a local failure, e.g. a SYN-ACK retransmission that
# fails to send makes it drop the whole half-open request.)

import atexit
import itertools as _itertools

LAB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab")
FOREIGN_PEER = os.path.join(LAB_DIR, "foreign_peer.py")
FOREIGN_MARK = 0x7470
FOREIGN_PORTS = range(9100, 9200)
LOSS_PREFIX = "tploss"          # names of the loss helpers' tables (bridge family, PATH_NS)
PATH_NS = LAB + "-path"         # the path namespace of lab.sh (bridge br0, table bridge tppath)
_nft_seq = _itertools.count(1)


def nft_json(ns, family, name):
    """`nft -j list table FAMILY NAME` in NS, parsed (None if the table is absent)."""
    r = run(ns_cmd(ns, ["nft", "-j", "list", "table", family, name]), timeout=10)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def rule_counters(ns, family, name):
    """{comment: packets} of the rules with a comment and a counter in the table."""
    doc = nft_json(ns, family, name) or {}
    out = {}
    for obj in doc.get("nftables", []):
        rule = obj.get("rule")
        if not rule or "comment" not in rule:
            continue
        for e in rule.get("expr", []):
            if isinstance(e, dict) and "counter" in e:
                out[rule["comment"]] = e["counter"].get("packets", 0)
    return out


def loss_tables(ns=PATH_NS):
    """The loss helpers' tables still present in NS ("table bridge tploss_...")."""
    return [t for t in nft_tables(ns) if t.split()[-1].startswith(LOSS_PREFIX)]


def _nft_load(ns, text):
    r = run(ns_cmd(ns, ["nft", "-f", "-"]), timeout=10, input=text)
    if r.returncode != 0:
        raise TestFailure("nft -f failed in %s: %s\n%s" % (ns, r.stderr.strip(), text))


def _nft_delete(ns, family, name):
    run(ns_cmd(ns, ["nft", "delete", "table", family, name]), timeout=10)


class NftTable:
    """`with NftTable(ns, name, body):` creates `table FAMILY NAME { BODY }` in NS
    for the block (one atomic `nft -f`) and deletes it afterwards, also when the
    block raises. A stale table of the same name is replaced."""

    def __init__(self, ns, name, body, family="inet"):
        self.ns, self.name, self.body, self.family = ns, name, body, family

    def text(self):
        return "table %s %s {\n%s\n}\n" % (self.family, self.name, self.body)

    def __enter__(self):
        _nft_delete(self.ns, self.family, self.name)
        _nft_load(self.ns, self.text())
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def remove(self):
        _nft_delete(self.ns, self.family, self.name)
        if self.exists():
            raise TestFailure("nft table %s %s is still in %s after delete"
                              % (self.family, self.name, self.ns))

    def exists(self):
        r = run(ns_cmd(self.ns, ["nft", "list", "table", self.family, self.name]), timeout=10)
        return r.returncode == 0

    def listing(self):
        return run(ns_cmd(self.ns, ["nft", "-a", "list", "table", self.family, self.name]),
                   timeout=10).stdout

    def counters(self):
        return rule_counters(self.ns, self.family, self.name)


def _direction_match(direction, match):
    if direction == "to_server":
        m = "ip saddr %s ip daddr %s" % (CLI_IP, SRV_IP)
    elif direction == "to_client":
        m = "ip saddr %s ip daddr %s" % (SRV_IP, CLI_IP)
    else:
        raise ValueError("direction must be 'to_server' or 'to_client', not %r" % (direction,))
    return ("%s %s" % (m, match or "")).strip()


class _PathLoss:
    """Common part of Loss and DropNth: one table `bridge tploss_KINDpid_n` in the
    path namespace with a forward chain holding `rules` (one atomic `nft -f`),
    deleted when the block ends, also when it raises."""

    def __init__(self, kind, ns, rules):
        self.ns = ns
        # pid: helpers of test processes that share the lab never share a table
        self.name = "%s_%s%d_%d" % (LOSS_PREFIX, kind, os.getpid(), next(_nft_seq))
        self.rules = list(rules)
        self._made = False

    def text(self):
        return ("table bridge %s {\n  chain forward {\n"
                "    type filter hook forward priority 0; policy accept;\n%s\n  }\n}\n"
                % (self.name, "\n".join("    " + r for r in self.rules)))

    def __enter__(self):
        if not os.path.exists("/run/netns/" + self.ns):
            raise TestFailure("loss helper %s: namespace %s does not exist (the lab's path "
                              "namespace; lab.sh up creates it)" % (self.name, self.ns))
        _nft_delete(self.ns, "bridge", self.name)
        self._made = True
        try:
            _nft_load(self.ns, self.text())
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def remove(self):
        if not self._made:
            return
        self._made = False
        _nft_delete(self.ns, "bridge", self.name)
        left = [t for t in nft_tables(self.ns) if t.split()[-1] == self.name]
        if left:
            raise TestFailure("loss helper %s left %r in %s" % (self.name, left, self.ns))

    def listing(self):
        return run(ns_cmd(self.ns, ["nft", "-a", "list", "table", "bridge", self.name]),
                   timeout=10).stdout

    def counters(self):
        return rule_counters(self.ns, "bridge", self.name)


class Loss(_PathLoss):
    """Random loss on the path between the lab hosts, each direction on its own:

        with tplab.Loss(percent_to_client=30, match="tcp sport 80") as loss:
            ...
            loss.counts()   # {"to_client": {"seen": 12, "dropped": 4}}

    match: extra nft match text ANDed to the rules of both directions (e.g.
    "meta l4proto tcp"), or a dict {"to_server": TEXT, "to_client": TEXT}
    (nft has no "port" for either side: use "tcp dport 80" one way and
    "tcp sport 80" the other).
    Rules, in the path bridge's forward chain: `ip saddr A ip daddr B MATCH
    numgen random mod 100 < N drop`; N = 100 drops unconditionally. A direction
    with 0 % gets no rule."""

    def __init__(self, percent_to_server=0, percent_to_client=0, match="", ns=PATH_NS):
        self.percent = {"to_server": percent_to_server, "to_client": percent_to_client}
        rules = []
        for direction, pct in self.percent.items():
            if not isinstance(pct, int) or isinstance(pct, bool) or not 0 <= pct <= 100:
                raise ValueError("%s percent must be an integer 0..100" % direction)
            if pct == 0:
                continue
            m = _direction_match(direction, match.get(direction, "") if isinstance(match, dict)
                                 else match)
            # numgen gives 0..99 and nft refuses "< 100": 100 % is a plain drop.
            rnd = "" if pct == 100 else " numgen random mod 100 < %d" % pct
            rules += ['%s counter comment "%s-seen"' % (m, direction),
                      '%s%s counter drop comment "%s-dropped"' % (m, rnd, direction)]
        if not rules:
            raise ValueError("Loss: both percentages are 0")
        self.match = match
        _PathLoss.__init__(self, "loss", ns, rules)

    def counts(self):
        c = self.counters()
        return {d: {"seen": c.get(d + "-seen", 0), "dropped": c.get(d + "-dropped", 0)}
                for d, pct in self.percent.items() if pct}


class DropNth(_PathLoss):
    """Drop exactly the packets at the given 1-based positions among those that
    match `match` in one direction, on the path:

        with tplab.DropNth({2}, "tcp sport 80 tcp flags & (syn|ack) == syn|ack") as d:
            ...               # the 2nd SYN-ACK from port 80 never reaches the client
            d.seen(), d.dropped()

    The rule is `ip saddr A ip daddr B MATCH numgen inc mod 1000000 { p-1, ... }
    drop`: nft stops evaluating a rule at the first expression that does not
    match, so the counter only advances for matching packets, and it starts at
    0 for a new rule (test_lab_peer.py dropnth_positions checks both)."""

    def __init__(self, positions, match, direction="to_client", ns=PATH_NS):
        pos = sorted(set(positions))
        if not pos or not all(isinstance(p, int) and 1 <= p < 1000000 for p in pos):
            raise ValueError("positions must be integers in 1..999999")
        self.positions, self.direction, self.match = pos, direction, match
        m = _direction_match(direction, match)
        rules = ['%s counter comment "seen"' % m,
                 '%s numgen inc mod 1000000 { %s } counter drop comment "dropped"'
                 % (m, ", ".join(str(p - 1) for p in pos))]
        _PathLoss.__init__(self, "nth", ns, rules)

    def seen(self):
        return self.counters().get("seen", 0)

    def dropped(self):
        return self.counters().get("dropped", 0)


def send_segment(ns, src, dst, sport, dport, flags, seq=0, ack=0, payload="", timeout=10, **extra):
    """Send ONE hand-made TCP segment from namespace NS (foreign_peer.py --craft):
    flags as letters ("FA", "S", "R", "A"), payload a string (escapes allowed),
    extra: window, mss, ts=[val, ecr], mark. Returns the sent segment as a dict."""
    spec = dict(src=src, dst=dst, sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF,
                ack=ack & 0xFFFFFFFF, payload=payload, **extra)
    r = run(ns_cmd(ns, [sys.executable, FOREIGN_PEER, "--craft", json.dumps(spec)]),
            timeout=timeout)
    if r.returncode != 0:
        raise TestFailure("send_segment %r failed (%d): %s" % (spec, r.returncode, r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])


class ForeignPeer:
    """The programmable user-space TCP peer on SRV_IP:port for the block:

        with tplab.ForeignPeer(9100, {"synack_gaps": [3, 6], "synack_end": "rst"}) as peer:
            ...
            peer.events("synack-retx")      # its JSON log lines, parsed

    Waits (at most `ready_timeout` s) for its "ready" line, so its sockets and
    its RST guard table exist when the block starts. On exit: SIGTERM, then
    SIGKILL after 3 s; its nft table (inet tpforeign_PORT) is deleted if the
    peer could not do it itself. Ports: 9100-9199 (not used by the lab)."""

    def __init__(self, port, config=None, ns=SRV_NS, bind=SRV_IP, lifetime=300, log_path=None,
                 ready_timeout=5.0):
        if port not in FOREIGN_PORTS:
            raise ValueError("foreign peer port %r: use 9100-9199" % (port,))
        self.port, self.config, self.ns, self.bind = port, dict(config or {}), ns, bind
        self.lifetime, self.ready_timeout = lifetime, ready_timeout
        self._tmp = None
        if log_path is None:
            self._tmp = tempfile.mkdtemp(prefix="tcpprobe-peer-")
            atexit.register(shutil.rmtree, self._tmp, True)
            log_path = os.path.join(self._tmp, "peer-%d.log" % port)
        self.log_path = log_path
        self.err_path = log_path + ".stderr"
        self.proc = None
        self.table = "tpforeign_%d" % port

    def argv(self):
        return ns_cmd(self.ns, [sys.executable, "-u", FOREIGN_PEER, "--bind", self.bind,
                                "--port", str(self.port), "--config", json.dumps(self.config),
                                "--log", self.log_path, "--lifetime", str(self.lifetime)])

    def __enter__(self):
        open(self.log_path, "w").close()
        self._err = open(self.err_path, "w")
        # `ip netns exec` execs python: proc.pid is the peer's own PID.
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.events("ready"):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        exited = self.proc.poll()
        self.stop()
        raise TestFailure("foreign peer on %s:%d not ready: %s; stderr: %s"
                          % (self.bind, self.port,
                             "no \"ready\" line within %.1f s" % self.ready_timeout
                             if exited is None else "it exited with status %s" % exited,
                             self.stderr().strip() or "(empty)"))

    def __exit__(self, *exc):
        self.stop()
        return False

    def stderr(self):
        try:
            with open(self.err_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self._err.close()
            self.returncode = self.proc.returncode
            self.proc = None
        # The peer deletes its table itself; not after SIGKILL.
        run(ns_cmd(self.ns, ["nft", "delete", "table", "inet", self.table]), timeout=10)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def events(self, *names, **match):
        """Parsed log lines; only those whose "event" is one of NAMES (if given)
        and whose fields equal the keyword arguments (e.g. cport=40000)."""
        out = []
        try:
            with open(self.log_path) as f:
                lines = f.readlines()
        except OSError:
            return out
        for line in lines:
            if not line.endswith("\n"):
                break                          # being written
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if names and e.get("event") not in names:
                continue
            if any(e.get(k) != v for k, v in match.items()):
                continue
            out.append(e)
        return out

    def wait_event(self, name, timeout, **match):
        """The first event NAME (matching the keyword fields), waiting at most
        `timeout` s; None if it did not come."""
        ev = wait_until(lambda: self.events(name, **match), timeout)
        return ev[0] if ev else None

    def log_text(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""


class Firewall:
    """`with Firewall(c, "drop", 20):` turns the lab's path into the forgetting
    firewall (lab.sh firewall) for the block and back into a plain bridge after."""

    def __init__(self, c, mode, seconds):
        self.lab = os.path.join(c.source_dir or ".", "tests", "lab", "lab.sh")
        self.mode, self.seconds = mode, seconds

    def _lab(self, *args):
        return run(["bash", self.lab] + list(args), timeout=30, env=dict(os.environ))

    def __enter__(self):
        r = self._lab("firewall", self.mode, str(self.seconds))
        if r.returncode != 0:
            if "br_netfilter" in r.stderr:
                skip("skipped: " + r.stderr.strip())
            raise TestFailure("lab.sh firewall failed: %s" % r.stderr.strip())
        return self

    def __exit__(self, *exc):
        self._lab("firewall", "off")
        left = run(ns_cmd(PATH_NS, ["nft", "list", "table", "inet", "tpfirewall"]), timeout=10)
        if left.returncode == 0:
            raise TestFailure("the firewall table is still in %s" % PATH_NS)
        return False
