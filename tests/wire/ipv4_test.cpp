// Tests for wire/ipv4: the checked IPv4 view, the RFC 1071 checksum, and every IPv4
// error value with crafted bytes. Golden header values come from real captures.
#include <doctest/doctest.h>

#include "fixtures/linux_capture.hpp"
#include "tcpprobe/wire/ipv4.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/packet.hpp"
#include "wire/craft.hpp"

using namespace tcpprobe;
using namespace tcpprobe::wire;
namespace fx = tcpprobe::fixtures;

namespace {
constexpr std::size_t ethernet_len = 14;

Bytes ip_of(Bytes frame) { return frame.subspan(ethernet_len); }

/// The error from the view, checked to be the same through the whole-packet decoder.
WireError ipv4_error(Bytes packet) {
    auto view = Ipv4View::parse(packet);
    REQUIRE_FALSE(view.ok());
    auto whole = decode_ipv4_packet(packet);
    REQUIRE_FALSE(whole.ok());
    CHECK(whole.error() == view.error());
    return view.error();
}

ByteVec valid_packet() { return craft::tcp_packet({}); }
}  // namespace

TEST_CASE("IPv4: every header field of the captured SYN") {
    auto ip = Ipv4View::parse(ip_of(fx::veth_syn));
    REQUIRE(ip.ok());
    CHECK(ip->ihl() == 5);
    CHECK(ip->header_len() == 20);
    CHECK(ip->tos() == 0);
    CHECK(ip->total_length() == 60);
    CHECK(ip->id() == 49468);
    CHECK(ip->df());
    CHECK_FALSE(ip->mf());
    CHECK_FALSE(ip->reserved_flag());
    CHECK(ip->frag_offset() == 0);
    CHECK_FALSE(ip->is_fragment());
    CHECK(ip->ttl() == 64);
    CHECK(ip->protocol() == ip_proto_tcp);
    CHECK(ip->checksum() == 0x2757);
    CHECK(ip->src() == Ipv4Addr{0xC6126301u});
    CHECK(ip->dst() == Ipv4Addr{0xC6126302u});
    CHECK(ip->options().empty());
    CHECK(ip->header().size() == 20);
    CHECK(ip->payload().size() == 40);
    CHECK(ip->payload().data() == ip_of(fx::veth_syn).data() + 20);
    CHECK_FALSE(ip->truncated());
}

TEST_CASE("IPv4: the captured ICMP error has tos 0xc0, no DF and protocol ICMP") {
    auto ip = Ipv4View::parse(ip_of(fx::veth_icmp_port_unreachable));
    REQUIRE(ip.ok());
    CHECK(ip->tos() == 0xC0);
    CHECK_FALSE(ip->df());
    CHECK(ip->id() == 57902);
    CHECK(ip->ttl() == 64);
    CHECK(ip->protocol() == ip_proto_icmp);
    CHECK(ip->total_length() == 88);
    CHECK(ip->payload().size() == 68);
}

TEST_CASE("IPv4: a captured header's checksum verifies to zero; one flipped bit does not") {
    for (Bytes frame : {Bytes{fx::veth_syn}, Bytes{fx::veth_synack}, Bytes{fx::veth_rst},
                        Bytes{fx::veth_icmp_port_unreachable}, Bytes{fx::lo_syn_partial_checksum}}) {
        CHECK(internet_checksum(ip_of(frame).first(20)) == 0);
    }
    ByteVec header(ip_of(fx::veth_syn).begin(), ip_of(fx::veth_syn).begin() + 20);
    header[8] ^= 0x01;  // ttl 64 -> 65
    CHECK(internet_checksum(header) != 0);
}

TEST_CASE("internet_checksum: the RFC 1071 §3 worked example") {
    // 0001 + f203 + f4f5 + f6f7 = 2ddf0, folded ddf2; the checksum is its complement.
    const std::uint8_t b[] = {0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7};
    CHECK(internet_checksum(b) == 0x220D);
}

TEST_CASE("internet_checksum: an odd trailing byte counts as the high half of a word") {
    const std::uint8_t odd[] = {0x12, 0x34, 0x56};
    const std::uint8_t padded[] = {0x12, 0x34, 0x56, 0x00};
    CHECK(internet_checksum(odd) == internet_checksum(padded));
    CHECK(internet_checksum(odd) == static_cast<std::uint16_t>(~(0x1234 + 0x5600)));
}

TEST_CASE("internet_checksum: the initial value is added and folded like any word") {
    const std::uint8_t b[] = {0xFF, 0xFF};
    CHECK(internet_checksum(b, 0x0001) == static_cast<std::uint16_t>(~0x0001));
    CHECK(internet_checksum({}, 0x3FFFC) == static_cast<std::uint16_t>(~0xFFFF));
    CHECK(internet_checksum({}) == 0xFFFF);
}

TEST_CASE("IPv4: the payload stops at the total length, so Ethernet padding is ignored") {
    // A 54-byte RST is padded to the 60-byte Ethernet minimum on a real NIC.
    ByteVec padded(ip_of(fx::veth_rst).begin(), ip_of(fx::veth_rst).end());
    padded.insert(padded.end(), 6, 0x00);
    auto ip = Ipv4View::parse(padded);
    REQUIRE(ip.ok());
    CHECK(ip->total_length() == 40);
    CHECK(ip->payload().size() == 20);
    CHECK_FALSE(ip->truncated());
}

TEST_CASE("IPv4: a capture shorter than the total length is flagged truncated, not rejected") {
    Bytes whole = ip_of(fx::veth_data);
    auto ip = Ipv4View::parse(whole.first(whole.size() - 4));
    REQUIRE(ip.ok());
    CHECK(ip->truncated());
    CHECK(ip->total_length() == 58);
    CHECK(ip->payload().size() == 34);
}

TEST_CASE("IPv4: header options move the payload (IHL 6)") {
    craft::Ip ip;
    ip.options = {0x01, 0x01, 0x01, 0x00};  // NOP NOP NOP EOL
    ByteVec packet = craft::tcp_packet({}, ip);
    auto view = Ipv4View::parse(packet);
    REQUIRE(view.ok());
    CHECK(view->ihl() == 6);
    CHECK(view->options().size() == 4);
    CHECK(view->options()[3] == 0x00);
    CHECK(view->payload().size() == 20);
    CHECK(view->payload()[0] == 0x9C);  // sport 40000 = 0x9c40
}

TEST_CASE("IPv4: flags word — MF, fragment offset and the reserved bit are read as sent") {
    craft::Ip ip;
    ip.df = false;
    ip.mf = true;
    ip.frag_offset = 0x1ABC;
    ByteVec packet = craft::tcp_packet({}, ip);
    packet[6] |= 0x80;  // the reserved ("evil", RFC 3514) bit
    auto view = Ipv4View::parse(packet);
    REQUIRE(view.ok());
    CHECK_FALSE(view->df());
    CHECK(view->mf());
    CHECK(view->reserved_flag());
    CHECK(view->frag_offset() == 0x1ABC);
    CHECK(view->is_fragment());
}

TEST_CASE("IPv4: addresses print as dotted quads") {
    CHECK(to_string(Ipv4Addr{0xC6126301u}) == "198.18.99.1");
    CHECK(to_string(Ipv4Addr{0}) == "0.0.0.0");
    CHECK(to_string(Ipv4Addr{0xFFFFFFFFu}) == "255.255.255.255");
    CHECK(to_string(Ipv4Addr{0x7F000001u}) == "127.0.0.1");
}

TEST_CASE("ipv4-truncated: 19 bytes cannot hold an IPv4 header") {
    ByteVec p = valid_packet();
    CHECK(ipv4_error(Bytes{p}.first(19)) == WireError::Ipv4Truncated);
    CHECK(ipv4_error(Bytes{}) == WireError::Ipv4Truncated);
    CHECK(to_string(WireError::Ipv4Truncated) == "ipv4-truncated");
}

TEST_CASE("ipv4-bad-version: an Ethernet frame typed IPv4 whose header says version 6") {
    craft::Ip ip;
    ip.version = 6;
    ByteVec p = craft::tcp_packet({}, ip);
    CHECK(ipv4_error(p) == WireError::Ipv4BadVersion);
    auto frame = decode_frame(dlt::en10mb, craft::ethernet(p));
    REQUIRE_FALSE(frame.ok());
    CHECK(frame.error() == WireError::Ipv4BadVersion);
    CHECK(to_string(WireError::Ipv4BadVersion) == "ipv4-bad-version");
}

TEST_CASE("ipv4-bad-ihl: IHL below 5") {
    for (std::uint8_t ihl = 0; ihl < 5; ++ihl) {
        CAPTURE(ihl);
        craft::Ip ip;
        ip.ihl = ihl;
        CHECK(ipv4_error(craft::tcp_packet({}, ip)) == WireError::Ipv4BadIhl);
    }
    CHECK(to_string(WireError::Ipv4BadIhl) == "ipv4-bad-ihl");
}

TEST_CASE("ipv4-header-past-end: IHL 15 (60 bytes) with 40 bytes captured") {
    craft::Ip ip;
    ip.ihl = 15;
    ByteVec p = craft::tcp_packet({}, ip);
    REQUIRE(p.size() == 40);
    CHECK(ipv4_error(p) == WireError::Ipv4HeaderPastEnd);
    CHECK(to_string(WireError::Ipv4HeaderPastEnd) == "ipv4-header-past-end");
}

TEST_CASE("ipv4-bad-total-length: total length smaller than the header") {
    SUBCASE("total length 19 with a 20-byte header") {
        craft::Ip ip;
        ip.total_length = 19;
        CHECK(ipv4_error(craft::tcp_packet({}, ip)) == WireError::Ipv4BadTotalLength);
    }
    SUBCASE("total length 20 with a 24-byte header") {
        craft::Ip ip;
        ip.options = {0x01, 0x01, 0x01, 0x01};
        ip.total_length = 20;
        CHECK(ipv4_error(craft::tcp_packet({}, ip)) == WireError::Ipv4BadTotalLength);
    }
    SUBCASE("total length 0") {
        craft::Ip ip;
        ip.total_length = 0;
        CHECK(ipv4_error(craft::tcp_packet({}, ip)) == WireError::Ipv4BadTotalLength);
    }
    CHECK(to_string(WireError::Ipv4BadTotalLength) == "ipv4-bad-total-length");
}

TEST_CASE("IPv4: total length equal to the header length is a packet with no payload") {
    craft::Ip ip;
    ip.total_length = 20;
    ip.protocol = 99;
    ByteVec packet = craft::tcp_packet({}, ip);
    auto view = Ipv4View::parse(packet);
    REQUIRE(view.ok());
    CHECK(view->payload().empty());
    CHECK_FALSE(view->truncated());
}
