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

    def __init__(self, ns, iface, path, bpf="tcp or icmp", max_seconds=60):
        self.ns, self.iface, self.path, self.bpf = ns, iface, path, bpf
        self.max_seconds = max_seconds
        self.proc = None
        self.errpath = path + ".stderr"

    def start(self):
        self._err = open(self.errpath, "w")
        # -Z root: do not drop to the tcpdump user (it could not create the
        # file in our private temp dir). `timeout` bounds its lifetime.
        argv = ns_cmd(self.ns, ["timeout", str(self.max_seconds), "tcpdump", "-i", self.iface,
                                "-n", "-Z", "root", "--immediate-mode", "-U", "-w", self.path,
                                self.bpf])
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

    def stop(self, settle=0.2):
        if self.proc is None:
            return
        time.sleep(settle)           # let the last packets reach the file
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
    """The run's nft table (flags owner) is gone with the process (within `wait` s)."""
    left = wait_until(lambda: not tcpprobe_tables(), wait) if wait else not tcpprobe_tables()
    c.check(left, "tcpprobe_ nft table left in %s %s: %r" % (CLI_NS, when, nft_tables()))


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
