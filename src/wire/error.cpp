// Names of wire errors, as shown in reports and tests.
#include "tcpprobe/wire/error.hpp"

namespace tcpprobe::wire {

std::string_view to_string(WireError e) {
    switch (e) {
        case WireError::LinkTruncated: return "link-truncated";
        case WireError::NotIpv4: return "not-ipv4";
        case WireError::UnknownLinkType: return "unknown-link-type";
        case WireError::Ipv4Truncated: return "ipv4-truncated";
        case WireError::Ipv4BadVersion: return "ipv4-bad-version";
        case WireError::Ipv4BadIhl: return "ipv4-bad-ihl";
        case WireError::Ipv4HeaderPastEnd: return "ipv4-header-past-end";
        case WireError::Ipv4BadTotalLength: return "ipv4-bad-total-length";
        case WireError::NotTcp: return "not-tcp";
        case WireError::Fragment: return "fragment";
        case WireError::TcpTruncated: return "tcp-truncated";
        case WireError::TcpBadDataOffset: return "tcp-bad-data-offset";
        case WireError::TcpDataOffsetPastEnd: return "tcp-data-offset-past-end";
        case WireError::OptionLengthTooSmall: return "option-length-too-small";
        case WireError::OptionPastEnd: return "option-past-end";
        case WireError::OptionBadLength: return "option-bad-length";
        case WireError::OptionsTooLong: return "options-too-long";
        case WireError::IcmpTruncated: return "icmp-truncated";
        case WireError::IcmpNotError: return "icmp-not-error";
        case WireError::IcmpQuoteTruncated: return "icmp-quote-truncated";
        case WireError::IcmpQuoteNotTcp: return "icmp-quote-not-tcp";
    }
    return "unknown-wire-error";
}

}  // namespace tcpprobe::wire
