// Tests for wire/linktype: stripping every link layer tcpprobe meets, from real captures
// (Ethernet, Linux cooked v1 and v2) and crafted frames (VLAN tags, raw IP under its four
// DLT numbers, BSD loopback in both byte orders), plus the three link-layer errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "fixtures/linux_capture.hpp"
#include "fixtures/pcap_file.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/packet.hpp"
#include "wire/craft.hpp"

using namespace tcpprobe;
using namespace tcpprobe::wire;
namespace fx = tcpprobe::fixtures;

namespace {
/// The IPv4 packet of the captured SYN, without its Ethernet header.
Bytes syn_ip() { return Bytes{fx::veth_syn}.subspan(14); }

Bytes stripped(int link_type, Bytes frame) {
    auto r = strip_link_layer(link_type, frame);
    REQUIRE_MESSAGE(r.ok(), "strip_link_layer(", link_type, ") failed: ", std::string(to_string(r.error())));
    return *r;
}

WireError link_error(int link_type, Bytes frame) {
    auto r = strip_link_layer(link_type, frame);
    REQUIRE_FALSE(r.ok());
    auto whole = decode_frame(link_type, frame);
    REQUIRE_FALSE(whole.ok());
    CHECK(whole.error() == r.error());
    return r.error();
}

bool same_bytes(Bytes a, Bytes b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

/// Ethernet header of the captured SYN with VLAN tags (TPID, TCI) inserted after the MACs.
ByteVec tagged(std::initializer_list<std::pair<std::uint16_t, std::uint16_t>> tags, std::uint16_t ethertype = 0x0800) {
    ByteVec f(fx::veth_syn, fx::veth_syn + 12);
    for (auto [tpid, tci] : tags) {
        append_be16(f, tpid);
        append_be16(f, tci);
    }
    append_be16(f, ethertype);
    f.insert(f.end(), syn_ip().begin(), syn_ip().end());
    return f;
}

ByteVec with_prefix(ByteVec prefix, Bytes packet) {
    prefix.insert(prefix.end(), packet.begin(), packet.end());
    return prefix;
}

std::string fixture_path(const char* name) { return std::string(TCPPROBE_FIXTURES) + "/" + name; }

std::string line_of(const DecodedPacket& p) {
    REQUIRE(p.segment() != nullptr);
    return format_segment(*p.segment(), {Direction::Out, {}, {}});
}
}  // namespace

TEST_CASE("Link: Ethernet II loses its 14-byte header (captured SYN)") {
    Bytes ip = stripped(dlt::en10mb, fx::veth_syn);
    CHECK(ip.data() == fx::veth_syn + 14);
    CHECK(ip.size() == sizeof fx::veth_syn - 14);
}

TEST_CASE("Link: Ethernet with one 802.1Q tag") {
    ByteVec f = tagged({{0x8100, 0x0064}});
    CHECK(same_bytes(stripped(dlt::en10mb, f), syn_ip()));
}

TEST_CASE("Link: Ethernet with two tags, 802.1ad outside 802.1Q (QinQ)") {
    ByteVec f = tagged({{0x88A8, 0x00C8}, {0x8100, 0x0064}});
    CHECK(same_bytes(stripped(dlt::en10mb, f), syn_ip()));
}

TEST_CASE("Link: Ethernet with two 802.1Q tags") {
    ByteVec f = tagged({{0x8100, 0x0001}, {0x8100, 0x0002}});
    CHECK(same_bytes(stripped(dlt::en10mb, f), syn_ip()));
}

TEST_CASE("Link: a third VLAN tag is not followed") {
    ByteVec f = tagged({{0x8100, 1}, {0x8100, 2}, {0x8100, 3}});
    CHECK(link_error(dlt::en10mb, f) == WireError::NotIpv4);
}

TEST_CASE("not-ipv4: Ethernet frames carrying ARP, IPv6 or a tagged IPv6 packet") {
    CHECK(link_error(dlt::en10mb, tagged({}, 0x0806)) == WireError::NotIpv4);
    CHECK(link_error(dlt::en10mb, tagged({}, 0x86DD)) == WireError::NotIpv4);
    CHECK(link_error(dlt::en10mb, tagged({{0x8100, 5}}, 0x86DD)) == WireError::NotIpv4);
    CHECK(to_string(WireError::NotIpv4) == "not-ipv4");
}

TEST_CASE("link-truncated: Ethernet shorter than its header or than a VLAN tag") {
    CHECK(link_error(dlt::en10mb, Bytes{fx::veth_syn}.first(13)) == WireError::LinkTruncated);
    CHECK(link_error(dlt::en10mb, Bytes{}) == WireError::LinkTruncated);
    ByteVec f = tagged({{0x8100, 0x0064}});
    CHECK(link_error(dlt::en10mb, Bytes{f}.first(17)) == WireError::LinkTruncated);
    CHECK(to_string(WireError::LinkTruncated) == "link-truncated");
}

TEST_CASE("Link: Ethernet header alone is an empty IPv4 packet, rejected by the IPv4 layer") {
    auto p = decode_frame(dlt::en10mb, Bytes{fx::veth_syn}.first(14));
    REQUIRE_FALSE(p.ok());
    CHECK(p.error() == WireError::Ipv4Truncated);
}

TEST_CASE("Link: Linux cooked v1 (captured on any, DLT 113)") {
    Bytes ip = stripped(dlt::linux_sll, fx::sll_syn);
    CHECK(ip.data() == fx::sll_syn + 16);
    CHECK(same_bytes(ip, syn_ip()));
}

TEST_CASE("Link: Linux cooked v2 (captured on any, DLT 276)") {
    Bytes ip = stripped(dlt::linux_sll2, fx::sll2_synack);
    CHECK(ip.data() == fx::sll2_synack + 20);
    CHECK(same_bytes(ip, Bytes{fx::veth_synack}.subspan(14)));
}

TEST_CASE("Link: Linux cooked frames errors — short header and non-IPv4 protocol") {
    CHECK(link_error(dlt::linux_sll, Bytes{fx::sll_syn}.first(15)) == WireError::LinkTruncated);
    CHECK(link_error(dlt::linux_sll2, Bytes{fx::sll2_synack}.first(19)) == WireError::LinkTruncated);
    ByteVec sll(fx::sll_syn, fx::sll_syn + sizeof fx::sll_syn);
    store_be16(sll, 14, 0x86DD);
    CHECK(link_error(dlt::linux_sll, sll) == WireError::NotIpv4);
    ByteVec sll2(fx::sll2_synack, fx::sll2_synack + sizeof fx::sll2_synack);
    store_be16(sll2, 0, 0x0806);
    CHECK(link_error(dlt::linux_sll2, sll2) == WireError::NotIpv4);
}

TEST_CASE("Link: raw IPv4 under DLT 12, 14, 101 and 228 is the packet itself") {
    for (int link : {dlt::raw, dlt::raw_bsd, dlt::raw_file, dlt::ipv4}) {
        CAPTURE(link);
        Bytes ip = stripped(link, syn_ip());
        CHECK(ip.data() == syn_ip().data());
        CHECK(ip.size() == syn_ip().size());
        auto p = decode_frame(link, syn_ip());
        REQUIRE(p.ok());
        CHECK(line_of(*p) == "> S 3642701903:3642701903(0) win 65495 <mss 65495,sackOK,TS val 1987817756 ecr 0,nop,wscale 7>");
    }
}

TEST_CASE("Link: raw frames that are empty or not version 4") {
    for (int link : {dlt::raw, dlt::raw_bsd, dlt::raw_file, dlt::ipv4}) {
        CAPTURE(link);
        CHECK(link_error(link, Bytes{}) == WireError::LinkTruncated);
        ByteVec v6(syn_ip().begin(), syn_ip().end());
        v6[0] = 0x60;
        CHECK(link_error(link, v6) == WireError::NotIpv4);
    }
}

TEST_CASE("Link: DLT_NULL takes AF_INET in either byte order") {
    ByteVec little = with_prefix({0x02, 0x00, 0x00, 0x00}, syn_ip());  // written by an x86 host
    ByteVec big = with_prefix({0x00, 0x00, 0x00, 0x02}, syn_ip());     // written by a big-endian host
    CHECK(same_bytes(stripped(dlt::null, little), syn_ip()));
    CHECK(same_bytes(stripped(dlt::null, big), syn_ip()));
}

TEST_CASE("Link: DLT_NULL with another family is not-ipv4") {
    // AF_INET6 is 10 on Linux and 24, 28 or 30 on the BSDs; 0x02000002 is neither order of 2.
    for (ByteVec family : {ByteVec{0x0A, 0, 0, 0}, ByteVec{0, 0, 0, 0x1E}, ByteVec{0x18, 0, 0, 0},
                           ByteVec{0x02, 0, 0, 0x02}, ByteVec{0, 0, 0, 0}}) {
        CAPTURE(to_hex(family));
        CHECK(link_error(dlt::null, with_prefix(family, syn_ip())) == WireError::NotIpv4);
    }
}

TEST_CASE("Link: DLT_LOOP takes AF_INET in network byte order only") {
    CHECK(same_bytes(stripped(dlt::loop, with_prefix({0, 0, 0, 0x02}, syn_ip())), syn_ip()));
    CHECK(link_error(dlt::loop, with_prefix({0x02, 0, 0, 0}, syn_ip())) == WireError::NotIpv4);
}

TEST_CASE("link-truncated: loopback frames shorter than the 4-byte family") {
    const ByteVec three{0x02, 0x00, 0x00};
    CHECK(link_error(dlt::null, three) == WireError::LinkTruncated);
    CHECK(link_error(dlt::loop, three) == WireError::LinkTruncated);
}

TEST_CASE("unknown-link-type: DLTs tcpprobe does not decode") {
    for (int link : {2, 6, 105, 127, 192, 1000, -1}) {
        CAPTURE(link);
        CHECK(link_error(link, fx::veth_syn) == WireError::UnknownLinkType);
    }
    CHECK(to_string(WireError::UnknownLinkType) == "unknown-link-type");
}

TEST_CASE("Link: the same SYN decodes identically under every link type") {
    const std::pair<int, ByteVec> frames[] = {
        {dlt::en10mb, ByteVec(std::begin(fx::veth_syn), std::end(fx::veth_syn))},
        {dlt::en10mb, tagged({{0x88A8, 1}, {0x8100, 2}})},
        {dlt::linux_sll, ByteVec(std::begin(fx::sll_syn), std::end(fx::sll_syn))},
        {dlt::raw, ByteVec(syn_ip().begin(), syn_ip().end())},
        {dlt::null, with_prefix({0x02, 0, 0, 0}, syn_ip())},
        {dlt::loop, with_prefix({0, 0, 0, 0x02}, syn_ip())},
    };
    for (const auto& entry : frames) {
        const int link = entry.first;
        CAPTURE(link);
        auto p = decode_frame(link, entry.second);
        REQUIRE(p.ok());
        CHECK(line_of(*p) == "> S 3642701903:3642701903(0) win 65495 <mss 65495,sackOK,TS val 1987817756 ecr 0,nop,wscale 7>");
        CHECK(p->segment()->checksum_ok == true);
        CHECK(p->ip.id == 49468);
    }
}

TEST_CASE("Link: every frame of the Ethernet, SLL and SLL2 captures decodes to the same packet") {
    auto eth = fx::read_pcap(fixture_path("veth_session.pcap"));
    auto sll = fx::read_pcap(fixture_path("veth_session_sll.pcap"));
    auto sll2 = fx::read_pcap(fixture_path("veth_session_sll2.pcap"));
    REQUIRE(eth.link_type == dlt::en10mb);
    REQUIRE(sll.link_type == dlt::linux_sll);
    REQUIRE(sll2.link_type == dlt::linux_sll2);
    REQUIRE(eth.frames.size() == 14);
    REQUIRE(sll.frames.size() == eth.frames.size());
    REQUIRE(sll2.frames.size() == eth.frames.size());
    for (std::size_t i = 0; i < eth.frames.size(); ++i) {
        CAPTURE(i);
        Bytes a = stripped(dlt::en10mb, eth.frames[i]);
        CHECK(same_bytes(stripped(dlt::linux_sll, sll.frames[i]), a));
        CHECK(same_bytes(stripped(dlt::linux_sll2, sll2.frames[i]), a));
    }
}
