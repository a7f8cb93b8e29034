// ICMP error parsing: only messages that quote a packet are errors we can correlate.
#include "tcpprobe/wire/icmp.hpp"

#include <fmt/format.h>

#include "tcpprobe/wire/ipv4.hpp"

namespace tcpprobe::wire {

namespace {
bool quotes_a_packet(std::uint8_t type) {
    return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}
}  // namespace

Result<IcmpError, WireError> parse_icmp_error(Ipv4Addr reporter, Bytes icmp) {
    if (icmp.size() < 8) return Err{WireError::IcmpTruncated};
    IcmpError e;
    e.reporter = reporter;
    e.type = icmp[0];
    e.code = icmp[1];
    if (!quotes_a_packet(e.type)) return Err{WireError::IcmpNotError};
    if (e.type == 3 && e.code == 4) e.next_hop_mtu = load_be16(icmp, 6);
    Bytes quote = icmp.subspan(8);
    // The quoted header is checked like any other, except that its total length refers
    // to the original packet, not to what was quoted.
    if (quote.size() < 20 || (quote[0] >> 4) != 4) return Err{WireError::IcmpQuoteTruncated};
    std::size_t ihl = std::size_t{quote[0] & 0x0Fu} * 4;
    if (ihl < 20 || quote.size() < ihl + 8) return Err{WireError::IcmpQuoteTruncated};
    if (quote[9] != ip_proto_tcp) return Err{WireError::IcmpQuoteNotTcp};
    Bytes tcp = quote.subspan(ihl);
    e.quoted_src = {{load_be32(quote, 12)}, load_be16(tcp, 0)};
    e.quoted_dst = {{load_be32(quote, 16)}, load_be16(tcp, 2)};
    e.quoted_seq = Seq{load_be32(tcp, 4)};
    return e;
}

bool icmp_is_advisory(std::uint8_t type) { return type == 4 || type == 5; }

std::string describe_icmp(std::uint8_t type, std::uint8_t code) {
    if (type == 3) {
        static constexpr const char* names[] = {
            "net-unreachable", "host-unreachable", "protocol-unreachable", "port-unreachable",
            "fragmentation-needed", "source-route-failed", "net-unknown", "host-unknown",
            "source-host-isolated", "net-prohibited", "host-prohibited", "net-tos-unreachable",
            "host-tos-unreachable", "admin-prohibited", "host-precedence-violation",
            "precedence-cutoff"};
        if (code < std::size(names)) return names[code];
    }
    if (type == 11) return code == 0 ? "ttl-exceeded" : "reassembly-time-exceeded";
    if (type == 4) return "source-quench";
    if (type == 5) return "redirect";
    if (type == 12) return "parameter-problem";
    return fmt::format("type {} code {}", type, code);
}

}  // namespace tcpprobe::wire
