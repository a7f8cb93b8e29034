// ICMP errors quoting one of our TCP segments (RFC 792, RFC 1122 §3.2.2).
//
// An error quotes the offending IPv4 header plus at least the first 8 bytes of its
// payload: for TCP that is both ports and the sequence number, enough to correlate the
// error to a flow (and to check that the sequence number is one we sent, RFC 5927).
#pragma once

#include <cstdint>
#include <string_view>

#include "tcpprobe/result.hpp"
#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/error.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::wire {

struct IcmpError {
    Ipv4Addr reporter;       ///< who sent the ICMP error
    std::uint8_t type = 0;
    std::uint8_t code = 0;
    std::uint16_t next_hop_mtu = 0;  ///< type 3 code 4 only
    Endpoint quoted_src;     ///< the quoted packet's source (normally us)
    Endpoint quoted_dst;
    Seq quoted_seq;
};

/// Parses the ICMP message that follows an IPv4 header. Only error types that quote a
/// packet (3, 4, 5, 11, 12) and a quoted TCP packet are accepted.
Result<IcmpError, WireError> parse_icmp_error(Ipv4Addr reporter, Bytes icmp);

/// A redirect (type 5: a router forwarded the packet and names a better next hop, RFC
/// 1122 3.2.2.2) or a source quench (type 4, which RFC 6633 tells hosts to ignore) does
/// not say the quoted packet was dropped: it is no answer to a probe.
bool icmp_is_advisory(std::uint8_t type);

/// "port-unreachable", "admin-prohibited", "ttl-exceeded", ... or "type T code C".
std::string describe_icmp(std::uint8_t type, std::uint8_t code);

}  // namespace tcpprobe::wire
