#!/usr/bin/env python3
"""Turn off checksum/segmentation offloads on an interface without ethtool.

Usage: offload_off.py IFNAME   (run inside the interface's namespace)

Fallback for tests/lab/lab.sh when the `ethtool` binary is missing.  Uses the
legacy SIOCETHTOOL get/set commands (struct ethtool_value) that the kernel
still maps onto netdev features.  On a veth, TX checksum offload left on
means locally generated segments carry an unfilled checksum in pcap captures
("incorrect cksum"), and GRO/TSO can merge or split segments: both confuse a
packet-level prober.  Prints "feature=on|off" per feature; exits 1 if a
feature that the device lets us change stays on.
"""

import array
import fcntl
import socket
import struct
import sys

SIOCETHTOOL = 0x8946
IFNAMSIZ = 16
IFREQ_SIZE = 40

# name: (ETHTOOL_Gxxx, ETHTOOL_Sxxx) from <linux/ethtool.h>
FEATURES = {
    "rx":  (0x14, 0x15),   # rx checksumming
    "tx":  (0x16, 0x17),   # tx checksumming
    "sg":  (0x18, 0x19),   # scatter-gather
    "tso": (0x1e, 0x1f),   # tcp segmentation offload
    "gso": (0x23, 0x24),   # generic segmentation offload
    "gro": (0x2b, 0x2c),   # generic receive offload
}


def ethtool_value(sock, ifname, cmd, data=0):
    buf = array.array("I", [cmd, data])          # struct ethtool_value
    addr, _ = buf.buffer_info()
    ifr = struct.pack("%dsP" % IFNAMSIZ, ifname.encode(), addr)
    ifr += b"\0" * (IFREQ_SIZE - len(ifr))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    return buf[1]


def main():
    if len(sys.argv) != 2 or len(sys.argv[1]) >= IFNAMSIZ:
        sys.exit("usage: offload_off.py IFNAME")
    ifname = sys.argv[1]
    rc = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name, (get, set_) in FEATURES.items():
            try:
                ethtool_value(s, ifname, set_, 0)
            except OSError:
                pass                    # fixed feature; checked below
            try:
                on = ethtool_value(s, ifname, get)
            except OSError as e:
                print("%s=? (%s)" % (name, e.strerror))
                continue
            print("%s=%s" % (name, "on" if on else "off"))
            if on and name in ("tx", "tso", "gro"):
                rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
