#!/usr/bin/env python3
"""Privileged integration tests of the hardening (issue 11): least privilege after setup,
`listen` and wide captures safe under setcap.

    test_hardening.py --tcpprobe BIN --source-dir DIR NAME     run one test
    test_hardening.py --list                                   "NAME TIMEOUT" lines (for CMake)

Unprivileged runs use a copy of the binary with file capabilities
(cap_net_raw,cap_net_admin,cap_setpcap+ep) in a directory every user can read,
started as uid/gid 65534 by setpriv. Traffic stays inside the lab namespaces.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tplab  # noqa: E402
from tplab import CLI_IP, CLI_NS, SRV_IP, PORT_OPEN, TestFailure  # noqa: E402

TARGET = "%s:%d" % (SRV_IP, PORT_OPEN)
ECHO = 7
TESTS = {}
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test(timeout):
    def deco(fn):
        TESTS[fn.__name__] = (fn, timeout)
        return fn
    return deco


class SetcapCopy:
    """A copy of tcpprobe with file capabilities, readable and runnable by anyone."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="tcpprobe_setcap_", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.binary = os.path.join(self.dir, "tcpprobe")
        shutil.copy(binary, self.binary)
        os.chmod(self.binary, 0o755)
        r = subprocess.run(["setcap", "cap_net_raw,cap_net_admin,cap_setpcap+ep", self.binary],
                           capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise TestFailure("setcap failed (file system without xattrs?): %s" % r.stderr.strip())
        self.tp = tplab.Tcpprobe(self.binary)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def shared_dir():
    d = tempfile.mkdtemp(prefix="tcpprobe_w_", dir="/tmp")
    os.chmod(d, 0o1777)
    return d


def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def status_after_drop(c, p, argv):
    """/proc/PID/status once the seccomp filter is on (the last step of the drop)."""
    st = tplab.wait_until(lambda: (lambda s: s if s.get("Seccomp") == "2" else None)(proc_status(p.pid)), 5.0)
    if not st:
        p.kill()
        r = tplab.Tcpprobe.finish(p, argv)
        c.note(r.describe())
        raise TestFailure("tcpprobe never reached Seccomp: 2; last status: %r" % proc_status(p.pid))
    return st


def check_dropped(c, st, uid, gid):
    keep = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    c.note("/proc/PID/status:\n" + "\n".join("%s:\t%s" % (k, st.get(k)) for k in keep))
    c.eq(st.get("Uid").split(), [str(uid)] * 4, "Uid (real, effective, saved, fs)")
    c.eq(st.get("Gid").split(), [str(gid)] * 4, "Gid (real, effective, saved, fs)")
    c.eq(st.get("Groups"), "", "supplementary groups")
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        c.eq(st.get(k), "0000000000000000", k)
    c.eq(st.get("NoNewPrivs"), "1", "NoNewPrivs")
    c.eq(st.get("Seccomp"), "2", "Seccomp (filter mode)")


def run_and_inspect(c, tp, tmp, wrapper, uid, gid):
    """handshake with --linger and -w: the drop is checked on the running process, then the
    run must still end normally: verdict, -w file, nft table removed."""
    shared = shared_dir()
    try:
        pcap = os.path.join(shared, "run.pcap")
        argv = tp.argv(["-o", "json", "-w", pcap, "handshake", TARGET, "--linger", "2s"], wrapper=wrapper)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        st = status_after_drop(c, p, argv)
        check_dropped(c, st, uid, gid)
        r = tplab.Tcpprobe.finish(p, argv, timeout=15)
        c.note(r.describe())
        c.eq(r.returncode, 0, "exit code")
        s = r.summary()
        c.check(s is not None and s.get("verdict") == "open", "verdict %r" % (s and s.get("verdict")))
        pkts = tplab.read_pcap(pcap)
        c.check(len(pkts) >= 3 and [p.flag_str() for p in pkts[:3]] == ["S", "S.", "."],
                "-w file written after the drop: %s" % [p.flag_str() for p in pkts])
        tplab.check_no_table(c, "after the run")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@test(timeout=40)
def privileges_root_becomes_nobody(c, tp, tmp):
    """Run as root without sudo: uid/gid 65534, no capability in any set, NoNewPrivs, seccomp."""
    run_and_inspect(c, tp, tmp, ["env", "-u", "SUDO_UID", "-u", "SUDO_GID"], 65534, 65534)


@test(timeout=40)
def privileges_sudo_user(c, tp, tmp):
    """Run as root under sudo (SUDO_UID/SUDO_GID): the invoking user's ids."""
    run_and_inspect(c, tp, tmp, ["env", "SUDO_UID=65533", "SUDO_GID=65532"], 65533, 65532)


@test(timeout=40)
def privileges_setcap_user(c, tp, tmp):
    """An unprivileged user with a setcap copy: keeps its ids, every set empty (bounding too)."""
    with SetcapCopy(tp.binary) as copy:
        run_and_inspect(c, copy.tp, tmp, NOBODY, 65534, 65534)


def local_listener(port):
    """A listening socket in the client namespace (a real local server on `port`)."""
    code = ("import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind(('0.0.0.0',%d))\ns.listen(4)\nprint('up',flush=True)\ntime.sleep(20)\n" % port)
    p = subprocess.Popen(tplab.ns_cmd(CLI_NS, [sys.executable, "-c", code]), stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "up":
        p.kill()
        raise TestFailure("local listener on %d did not start" % port)
    return p


def local_connection():
    """A connected socket in the client namespace (to the lab's echo server); returns
    (process, its local port)."""
    code = ("import socket,time\ns=socket.create_connection(('%s',%d))\nprint(s.getsockname()[1],flush=True)\n"
            "for i in range(40):\n  s.sendall(b'secret %%d\\n' %% i); s.recv(100); time.sleep(0.25)\n" % (SRV_IP, ECHO))
    p = subprocess.Popen(tplab.ns_cmd(CLI_NS, [sys.executable, "-c", code]), stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if not line.isdigit():
        p.kill()
        raise TestFailure("local connection to the echo server did not start")
    return p, int(line)


def refused(c, r, code, words):
    c.note(r.describe())
    c.eq(r.returncode, code, "exit code")
    lines = r.stderr.strip().splitlines()
    c.eq(len(lines), 1, "stderr lines")
    for w in words:
        c.check(w in r.stderr, "the error does not say %r" % w)


@test(timeout=40)
def listen_refuses_used_ports(c, tp, tmp):
    """As an unprivileged user with a setcap copy: `listen` on a port a local server listens
    on, or a local connection uses, is refused (exit 64, nothing installed); a privileged
    port needs what binding it needs (exit 77)."""
    with SetcapCopy(tp.binary) as copy:
        server = local_listener(8080)
        try:
            r = copy.tp.run(["listen", ":8080", "--max-wait", "2s"], wrapper=NOBODY, timeout=20)
            refused(c, r, 64, ["8080", "local socket"])
            tplab.check_no_table(c, "after the refused listen on a listening port", wait=0.0)
        finally:
            server.kill()
            server.wait()
        conn, port = local_connection()
        try:
            r = copy.tp.run(["listen", ":%d" % port, "--max-wait", "2s"], wrapper=NOBODY, timeout=20)
            refused(c, r, 64, [str(port), "local socket"])
        finally:
            conn.kill()
            conn.wait()
        r = copy.tp.run(["listen", ":%d" % 443, "--max-wait", "1s"], wrapper=NOBODY, timeout=20)
        refused(c, r, 77, ["443", "privileged port"])
        tplab.check_no_table(c, "after the refused listens", wait=0.0)


@test(timeout=60)
def wide_capture_holds_only_the_runs_flows(c, tp, tmp):
    """40 target ports in one run (more than the 32 after which the filter once lost its
    port restriction), as an unprivileged setcap user, while another local program talks to
    the server: the -w file holds only the run's flows."""
    shared = shared_dir()
    conn, other_port = local_connection()
    try:
        with SetcapCopy(tp.binary) as copy:
            pcap = os.path.join(shared, "wide.pcap")
            r = copy.tp.run(["-o", "json", "-w", pcap, "handshake", "--half-open", "%s:%d-%d" % (SRV_IP, 7, 46),
                             "--timeout", "2s"], wrapper=NOBODY, timeout=40)
            c.note(r.describe())
            c.check(r.returncode in (0, 1, 2), "exit code %r" % r.returncode)
            s = r.summary()
            c.require(s is not None, "no summary")
            sports = {p.get("sport") for p in s.get("probes") or []}
            c.eq(len(s.get("probes") or []), 40, "probes in the summary")
            pkts = tplab.read_pcap(pcap)
            c.check(len(pkts) >= 40, "-w holds %d packets, fewer than our 40 SYNs" % len(pkts))
            foreign = [p for p in pkts if not ((p.src == CLI_IP and p.sport in sports) or
                                               (p.dst == CLI_IP and p.dport in sports))]
            c.check(not foreign, "-w holds packets of other flows (e.g. port %d):\n%s"
                    % (other_port, tplab.format_packets(foreign[:10])))
            c.check(not [p for p in pkts if other_port in (p.sport, p.dport)],
                    "the other program's connection was captured")
    finally:
        conn.kill()
        conn.wait()
        shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(tplab.main(TESTS))
