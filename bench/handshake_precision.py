#!/usr/bin/env python3
"""Handshake precision and latency in the lab.

Runs N `tcpprobe handshake` invocations against the lab's HTTP server while tshark
captures on the client veth, then compares tcpprobe's RTT (capture timestamps of its
own SYN and the SYN-ACK) with the RTT tshark reports for the same SYN/SYN-ACK pair
(matched by source port). Also reports the wall time of one handshake (process start
to exit), measured inside the client namespace so `ip netns exec` is not counted.

Usage (root): bench/handshake_precision.py [--runs 50] [--binary build/check/tcpprobe]
Traffic stays inside the lab's namespaces.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "tests", "lab", "lab.sh")
ENV = dict(os.environ, TP_LAB="tpbench", TP_LAB_NET="198.18.8")
SERVER = "198.18.8.2"


def inner(args):
    """Runs inside the client namespace: the handshakes and their wall times."""
    results = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        p = subprocess.run([args.binary, "handshake", f"{SERVER}:80", "-o", "json", "-q"],
                           capture_output=True, text=True, timeout=10)
        wall = time.perf_counter() - t0
        summary = json.loads(p.stdout.strip().splitlines()[-1])
        probe = summary["probes"][0]
        results.append({"sport": probe["sport"], "rtt_us": probe["rtt_us"], "wall_s": wall,
                        "verdict": summary["verdict"]})
        time.sleep(0.05)
    json.dump(results, sys.stdout)


def percentile(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def outer(args):
    subprocess.run([LAB, "up"], env=ENV, check=True, stdout=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pcap = os.path.join(tmp, "client.pcap")
            cap = subprocess.Popen(["ip", "netns", "exec", "tpbench-cli", "timeout", "300", "tshark", "-q", "-i",
                                    "tpbenchc0", "-f", "tcp port 80", "-w", pcap],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):  # wait for tshark to be capturing (bounded)
                if os.path.exists(pcap) and os.path.getsize(pcap) > 0:
                    break
                time.sleep(0.05)
            time.sleep(0.5)
            out = subprocess.run(["ip", "netns", "exec", "tpbench-cli", sys.executable, os.path.abspath(__file__),
                                  "--inner", "--runs", str(args.runs), "--binary", os.path.abspath(args.binary)],
                                 capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(1)
            time.sleep(0.5)
            cap.terminate()
            cap.wait(timeout=10)
            runs = json.loads(out.stdout)
            fields = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.srcport",
                                     "-e", "tcp.dstport", "-e", "tcp.flags.syn", "-e", "tcp.flags.ack"],
                                    capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run([LAB, "down"], env=ENV, stdout=subprocess.DEVNULL)

    syn, synack = {}, {}
    for line in fields.splitlines():
        t, sport, dport, s, a = line.split("\t")
        if s in ("1", "True"):
            if a in ("1", "True"):
                synack.setdefault(int(dport), float(t))
            else:
                syn.setdefault(int(sport), float(t))
    errors, walls = [], []
    for r in runs:
        walls.append(r["wall_s"] * 1e3)
        if r["verdict"] != "open" or r["sport"] not in syn or r["sport"] not in synack:
            continue
        tshark_rtt_us = (synack[r["sport"]] - syn[r["sport"]]) * 1e6
        errors.append(abs(r["rtt_us"] - tshark_rtt_us))
    rtts = [r["rtt_us"] for r in runs if r["rtt_us"] is not None]
    print(f"handshakes: {len(runs)}, matched with tshark: {len(errors)}")
    print(f"tcpprobe rtt: median {statistics.median(rtts):.1f} us")
    print(f"|tcpprobe rtt - tshark rtt|: median {statistics.median(errors):.2f} us, "
          f"p99 {percentile(errors, 99):.2f} us, max {max(errors):.2f} us")
    print(f"wall time of one handshake: median {statistics.median(walls):.2f} ms, "
          f"p90 {percentile(walls, 90):.2f} ms")
    return 0 if len(errors) == len(runs) else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "tcpprobe"))
    ap.add_argument("--inner", action="store_true")
    args = ap.parse_args()
    if args.inner:
        inner(args)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces, raw sockets)", file=sys.stderr)
        return 77
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
