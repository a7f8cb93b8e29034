// Whole-packet decoding: link layer -> IPv4 -> TCP segment or ICMP error.
// This is the single entry point for untrusted bytes (and the fuzz target's).
#pragma once

#include <variant>

#include "tcpprobe/result.hpp"
#include "tcpprobe/wire/icmp.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::wire {

struct DecodedPacket {
    Ipv4Addr src;
    Ipv4Addr dst;
    IpFields ip;
    std::uint16_t total_length = 0;
    bool truncated = false;        ///< captured fewer bytes than the IP total length
    bool ip_checksum_ok = true;
    std::size_t ip_options_len = 0;
    std::variant<Segment, IcmpError> body;

    const Segment* segment() const { return std::get_if<Segment>(&body); }
    const IcmpError* icmp() const { return std::get_if<IcmpError>(&body); }
};

Result<DecodedPacket, WireError> decode_ipv4_packet(Bytes packet);
Result<DecodedPacket, WireError> decode_frame(int link_type, Bytes frame);

/// Decodes a bare TCP segment (header + payload) between two addresses.
Result<Segment, WireError> decode_tcp(Ipv4Addr src, Ipv4Addr dst, Bytes tcp, bool truncated);

}  // namespace tcpprobe::wire
