// Tests for wire/icmp: the captured port-unreachable error quoting our SYN, crafted errors
// of every quoting type (RFC 792, RFC 1191 for the next-hop MTU), and the four ICMP error
// values. The quote is what ties an error to a flow, so its checks are the point here.
#include <doctest/doctest.h>

#include "fixtures/linux_capture.hpp"
#include "tcpprobe/wire/icmp.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/packet.hpp"
#include "wire/craft.hpp"

using namespace tcpprobe;
using namespace tcpprobe::wire;
namespace fx = tcpprobe::fixtures;

namespace {
constexpr Ipv4Addr router{0xC6120063u};  // 198.18.0.99

/// The original packet an error quotes: our SYN from 198.18.0.1:40000 to 198.18.0.2:80.
ByteVec original_packet(craft::Ip ip = {}) {
    craft::Tcp t;
    t.seq = 0xCAFEF00Du;
    return craft::tcp_packet(t, ip);
}

/// An ICMP message: type, code, checksum, the 4-byte "rest of header", then the quote.
ByteVec icmp_message(std::uint8_t type, std::uint8_t code, Bytes quote, std::uint32_t rest = 0) {
    ByteVec b{type, code, 0, 0};
    append_be32(b, rest);
    b.insert(b.end(), quote.begin(), quote.end());
    store_be16(b, 2, static_cast<std::uint16_t>(~craft::ones_complement_sum(b)));
    return b;
}

/// RFC 792's minimum quote: the IP header and the first 8 bytes of its payload.
ByteVec minimal_quote(craft::Ip ip = {}) {
    ByteVec p = original_packet(ip);
    p.resize(std::size_t{p[0] & 0x0Fu} * 4 + 8);
    return p;
}

WireError icmp_error(Bytes icmp) {
    auto e = parse_icmp_error(router, icmp);
    REQUIRE_FALSE(e.ok());
    craft::Ip outer;
    outer.src = router;
    outer.dst = craft::client;
    outer.protocol = ip_proto_icmp;
    auto whole = decode_ipv4_packet(craft::ipv4_packet(outer, icmp));
    REQUIRE_FALSE(whole.ok());
    CHECK(whole.error() == e.error());
    return e.error();
}
}  // namespace

TEST_CASE("ICMP: the captured port-unreachable decodes with every field of its quote") {
    auto p = decode_frame(dlt::en10mb, fx::veth_icmp_port_unreachable);
    REQUIRE(p.ok());
    CHECK(p->segment() == nullptr);
    REQUIRE(p->icmp() != nullptr);
    // IPv4 around the error
    CHECK(p->src == Ipv4Addr{0xC6126302u});
    CHECK(p->dst == Ipv4Addr{0xC6126301u});
    CHECK(p->ip.ttl == 64);
    CHECK(p->ip.tos == 0xC0);
    CHECK_FALSE(p->ip.df);
    CHECK(p->ip.id == 57902);
    CHECK(p->total_length == 88);
    CHECK_FALSE(p->truncated);
    CHECK(p->ip_checksum_ok);
    CHECK(p->ip_options_len == 0);
    // The error and its quote
    const IcmpError& e = *p->icmp();
    CHECK(e.reporter == Ipv4Addr{0xC6126302u});
    CHECK(e.type == 3);
    CHECK(e.code == 3);
    CHECK(e.next_hop_mtu == 0);
    CHECK(e.quoted_src == Endpoint{Ipv4Addr{0xC6126301u}, 41062});
    CHECK(e.quoted_dst == Endpoint{Ipv4Addr{0xC6126302u}, 50125});
    CHECK(e.quoted_seq == Seq{1488331863u});
    CHECK(describe_icmp(e.type, e.code) == "port-unreachable");
    CHECK(to_string(e.quoted_src) + " > " + to_string(e.quoted_dst) == "198.18.99.1:41062 > 198.18.99.2:50125");
}

TEST_CASE("ICMP: the captured error's own checksum verifies (the fixture is intact)") {
    Bytes icmp = Bytes{fx::veth_icmp_port_unreachable}.subspan(14 + 20);
    CHECK(internet_checksum(icmp) == 0);
}

TEST_CASE("ICMP: the minimal RFC 792 quote (IP header + 8 bytes) is enough to correlate") {
    ByteVec msg = icmp_message(3, 3, minimal_quote());
    auto e = parse_icmp_error(router, msg);
    REQUIRE(e.ok());
    CHECK(e->reporter == router);
    CHECK(e->quoted_src == Endpoint{craft::client, 40000});
    CHECK(e->quoted_dst == Endpoint{craft::server, 80});
    CHECK(e->quoted_seq == Seq{0xCAFEF00Du});
}

TEST_CASE("ICMP: a quoted header with IP options is skipped by its IHL") {
    craft::Ip ip;
    ip.options = {0x01, 0x01, 0x01, 0x00};
    ByteVec msg = icmp_message(11, 0, minimal_quote(ip));
    auto e = parse_icmp_error(router, msg);
    REQUIRE(e.ok());
    CHECK(e->quoted_src.port == 40000);
    CHECK(e->quoted_seq == Seq{0xCAFEF00Du});
}

TEST_CASE("ICMP: fragmentation-needed carries the next-hop MTU (RFC 1191)") {
    ByteVec msg = icmp_message(3, 4, minimal_quote(), 1400);
    auto e = parse_icmp_error(router, msg);
    REQUIRE(e.ok());
    CHECK(e->next_hop_mtu == 1400);
    CHECK(describe_icmp(3, 4) == "fragmentation-needed");
}

TEST_CASE("ICMP: the MTU field is read only for type 3 code 4") {
    ByteVec msg = icmp_message(3, 13, minimal_quote(), 1400);
    auto e = parse_icmp_error(router, msg);
    REQUIRE(e.ok());
    CHECK(e->next_hop_mtu == 0);
}

TEST_CASE("ICMP: every error type that quotes a packet is accepted") {
    for (std::uint8_t type : std::initializer_list<std::uint8_t>{3, 4, 5, 11, 12}) {
        CAPTURE(static_cast<int>(type));
        ByteVec msg = icmp_message(type, 0, minimal_quote());
        auto e = parse_icmp_error(router, msg);
        REQUIRE(e.ok());
        CHECK(e->type == type);
    }
}

TEST_CASE("icmp-truncated: fewer than 8 bytes of ICMP header") {
    ByteVec msg = icmp_message(3, 3, {});
    CHECK(icmp_error(Bytes{msg}.first(7)) == WireError::IcmpTruncated);
    CHECK(icmp_error(Bytes{}) == WireError::IcmpTruncated);
    CHECK(to_string(WireError::IcmpTruncated) == "icmp-truncated");
}

TEST_CASE("icmp-not-error: echo and other messages that quote nothing") {
    for (std::uint8_t type : std::initializer_list<std::uint8_t>{0, 8, 9, 10, 13, 14, 17, 18, 255}) {
        CAPTURE(static_cast<int>(type));
        CHECK(icmp_error(icmp_message(type, 0, minimal_quote())) == WireError::IcmpNotError);
    }
    CHECK(to_string(WireError::IcmpNotError) == "icmp-not-error");
}

TEST_CASE("icmp-quote-truncated: the quote is shorter than an IPv4 header") {
    ByteVec quote = minimal_quote();
    CHECK(icmp_error(icmp_message(3, 3, Bytes{quote}.first(19))) == WireError::IcmpQuoteTruncated);
    CHECK(icmp_error(icmp_message(3, 3, {})) == WireError::IcmpQuoteTruncated);
    CHECK(to_string(WireError::IcmpQuoteTruncated) == "icmp-quote-truncated");
}

TEST_CASE("icmp-quote-truncated: fewer than 8 bytes follow the quoted header") {
    ByteVec quote = minimal_quote();
    CHECK(icmp_error(icmp_message(3, 3, Bytes{quote}.first(27))) == WireError::IcmpQuoteTruncated);
    // With IP options the header is 24 bytes, so 31 bytes are one short.
    craft::Ip ip;
    ip.options = {0x01, 0x01, 0x01, 0x01};
    ByteVec long_quote = minimal_quote(ip);
    REQUIRE(long_quote.size() == 32);
    CHECK(icmp_error(icmp_message(3, 3, Bytes{long_quote}.first(31))) == WireError::IcmpQuoteTruncated);
}

TEST_CASE("icmp-quote-truncated: a quoted IHL below 5") {
    ByteVec quote = minimal_quote();
    quote[0] = 0x44;
    CHECK(icmp_error(icmp_message(3, 3, quote)) == WireError::IcmpQuoteTruncated);
}

TEST_CASE("icmp-quote-not-tcp: the quoted packet is UDP") {
    craft::Ip ip;
    ip.protocol = 17;
    CHECK(icmp_error(icmp_message(3, 3, minimal_quote(ip))) == WireError::IcmpQuoteNotTcp);
    CHECK(to_string(WireError::IcmpQuoteNotTcp) == "icmp-quote-not-tcp");
}

TEST_CASE("describe_icmp: names for the errors a prober meets, numbers otherwise") {
    CHECK(describe_icmp(3, 0) == "net-unreachable");
    CHECK(describe_icmp(3, 1) == "host-unreachable");
    CHECK(describe_icmp(3, 2) == "protocol-unreachable");
    CHECK(describe_icmp(3, 3) == "port-unreachable");
    CHECK(describe_icmp(3, 9) == "net-prohibited");
    CHECK(describe_icmp(3, 10) == "host-prohibited");
    CHECK(describe_icmp(3, 13) == "admin-prohibited");
    CHECK(describe_icmp(3, 15) == "precedence-cutoff");
    CHECK(describe_icmp(3, 16) == "type 3 code 16");
    CHECK(describe_icmp(11, 0) == "ttl-exceeded");
    CHECK(describe_icmp(11, 1) == "reassembly-time-exceeded");
    CHECK(describe_icmp(4, 0) == "source-quench");
    CHECK(describe_icmp(5, 1) == "redirect");
    CHECK(describe_icmp(12, 0) == "parameter-problem");
    CHECK(describe_icmp(8, 0) == "type 8 code 0");
}
