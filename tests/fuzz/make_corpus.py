#!/usr/bin/env python3
"""Writes the fuzz seed corpus (tests/fuzz/corpus/) from the captures in tests/fixtures/.

Each seed is one selector byte (an index into link_types[] in fuzz_decode.cpp:
0 EN10MB, 1 LINUX_SLL, 2 LINUX_SLL2, 3 RAW(12), 4 RAW(14), 5 RAW(101), 6 IPV4(228),
7 NULL, 8 LOOP, 9 unknown) followed by a frame. All frames are real captures, re-framed
for the link types no capture of ours uses, except the two files named crafted_*.
Usage: make_corpus.py [OUTDIR]   (default: the corpus directory next to this script)
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")


def read_pcap(name):
    data = open(os.path.join(FIXTURES, name), "rb").read()
    assert struct.unpack("<I", data[:4])[0] == 0xA1B2C3D4
    frames, off = [], 24
    while off < len(data):
        incl = struct.unpack("<I", data[off + 8:off + 12])[0]
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return frames


def csum(b, s=0):
    if len(b) % 2:
        b += b"\0"
    for i in range(0, len(b), 2):
        s += (b[i] << 8) | b[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def option_zoo_packet():
    """IPv4 + TCP with sack (2 blocks), tfo cookie, an unknown kind, wscale, eol, garbage."""
    opts = bytes([1, 1, 5, 18]) + struct.pack(">IIII", 1000, 2000, 3000, 4000)
    opts += bytes([34, 6, 0xDE, 0xAD, 0xBE, 0xEF])
    opts += bytes([30, 4, 0, 0x81])
    opts += bytes([3, 3, 9, 0, 0x55, 0x66])
    assert len(opts) % 4 == 0 and len(opts) <= 40
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    tcp = struct.pack(">HHIIHHHH", 40000, 80, 1000, 2000, ((5 + len(opts) // 4) << 12) | 0x18, 512, 0, 0)
    tcp += opts + b"data"
    ck = csum(tcp, sum(struct.unpack(">HHHH", src + dst)) + 6 + len(tcp))
    tcp = tcp[:16] + struct.pack(">H", ck) + tcp[18:]
    ip = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(tcp), 0x1234, 0x4000, 64, 6, 0) + src + dst
    return ip[:10] + struct.pack(">H", csum(ip)) + ip[12:] + tcp


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    eth = read_pcap("veth_session.pcap")
    sll = read_pcap("veth_session_sll.pcap")
    sll2 = read_pcap("veth_session_sll2.pcap")
    lo = read_pcap("lo_session.pcap")
    seeds = {
        "eth_syn": b"\x00" + eth[0],
        "eth_synack": b"\x00" + eth[1],
        "eth_data_hello": b"\x00" + eth[3],
        "eth_fin_ack": b"\x00" + eth[7],
        "eth_rst_ack": b"\x00" + eth[11],
        "eth_icmp_port_unreachable": b"\x00" + eth[13],
        "eth_lo_syn_partial_checksum": b"\x00" + lo[0],
        "sll_syn": b"\x01" + sll[0],
        "sll2_synack": b"\x02" + sll2[1],
        "raw12_peer_data_ok": b"\x03" + eth[5][14:],
        "raw101_peer_fin_ack": b"\x05" + eth[8][14:],
        "ipv4_228_lo_icmp": b"\x06" + lo[13][14:],
        "null_le_ack": b"\x07" + b"\x02\x00\x00\x00" + eth[2][14:],
        "loop_last_ack": b"\x08" + b"\x00\x00\x00\x02" + eth[9][14:],
        "crafted_eth_qinq_syn": b"\x00" + eth[0][:12] + b"\x88\xa8\x00\xc8\x81\x00\x00\x64" + eth[0][12:],
        "crafted_raw14_option_zoo": b"\x04" + option_zoo_packet(),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
