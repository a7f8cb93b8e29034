// Every way untrusted bytes can be malformed has its own error value, so a test (and a
// user reading a report) can tell exactly what was wrong with a packet.
#pragma once

#include <string_view>

#include <fmt/format.h>

namespace tcpprobe::wire {

enum class WireError {
    // link layer
    LinkTruncated,        ///< shorter than the link-layer header
    NotIpv4,              ///< link layer says another protocol (ARP, IPv6, ...)
    UnknownLinkType,      ///< a DLT we do not decode
    // IPv4
    Ipv4Truncated,        ///< fewer than 20 bytes
    Ipv4BadVersion,       ///< version field is not 4
    Ipv4BadIhl,           ///< IHL < 5
    Ipv4HeaderPastEnd,    ///< IHL*4 exceeds the captured bytes
    Ipv4BadTotalLength,   ///< total length smaller than the header
    NotTcp,               ///< protocol is neither TCP nor ICMP
    Fragment,             ///< non-first fragment, or first fragment too short to hold TCP
    // TCP
    TcpTruncated,         ///< fewer than 20 bytes of TCP header
    TcpBadDataOffset,     ///< data offset < 5
    TcpDataOffsetPastEnd, ///< data offset * 4 exceeds the segment
    // TCP options
    OptionLengthTooSmall, ///< option length byte is 0 or 1
    OptionPastEnd,        ///< option (or its length byte) runs past the option space
    OptionBadLength,      ///< wrong fixed length for its kind (e.g. MSS not 4)
    OptionsTooLong,       ///< encoder: more than 40 bytes
    // ICMP
    IcmpTruncated,        ///< fewer than 8 bytes of ICMP header
    IcmpNotError,         ///< an ICMP message that does not quote a packet (echo, ...)
    IcmpQuoteTruncated,   ///< quoted IPv4 header + 8 bytes not all there
    IcmpQuoteNotTcp,      ///< quoted packet is not TCP
};

std::string_view to_string(WireError e);

}  // namespace tcpprobe::wire

template <>
struct fmt::formatter<tcpprobe::wire::WireError> : fmt::formatter<std::string_view> {
    auto format(tcpprobe::wire::WireError e, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(tcpprobe::wire::to_string(e), ctx);
    }
};
